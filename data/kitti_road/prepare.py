"""Download KITTI Road (data_road.zip, ~450 MB) into data/kitti_road/ and print the folder to train on.

    python data/kitti_road/prepare.py            # then: fcn train --data-dir data/kitti_road/data_road ...
"""

from pathlib import Path

from fcn.data.download import prepare_kitti_road

if __name__ == "__main__":
    print(prepare_kitti_road(Path(__file__).parent))
