"""lambda-base-images: build, test, snapshot and publish base images for AWS Lambda runtimes."""

__version__ = "0.1.0"
