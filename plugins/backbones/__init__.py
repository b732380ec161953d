"""Built-in backbone plugins: a small CNN, every timm model, torchvision classifiers."""
