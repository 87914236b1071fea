"""fcn: Fully Convolutional Networks (Long, Shelhamer & Darrell, CVPR 2015) for street scenes, in Keras."""

__version__ = "0.1.0"
