"""Download KITTI Road (data_road.zip, ~450 MB) into data/kitti_road/ and print the folder to train on.

python data/kitti_road/prepare.py            # the same as: fcn data prepare kitti_road --dest data
"""

import sys
from pathlib import Path

from fcn.data.prepare import prepare

DATA_DIR = Path(__file__).resolve().parents[1]  # this repository's data/

if __name__ == "__main__":
    try:
        root = prepare("kitti_road", DATA_DIR)
    except (OSError, ValueError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    print(f"ready: fcn train --dataset kitti_road --data-dir {root}")
