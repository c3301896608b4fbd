# Imaging: CT preprocessing (Merlin's chain), QC, and the image / clinical-text feature caches.
