"""The BraTS MONAI Label app's modules (MONAI Label puts the app folder on ``sys.path``)."""
