"""Data sources (shipped digits, scikit-image photos, image folders, tensorflow-datasets
cifar10 / imagenet2012 without TensorFlow) and the PNG target pool."""
