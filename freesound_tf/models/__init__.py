"""Model architectures (one file each) and the name -> builder registry."""
