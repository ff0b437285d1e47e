"""Pictures and reports: training curves, classification reports, Grad-CAM panels."""
