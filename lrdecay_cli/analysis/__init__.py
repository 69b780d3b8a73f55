"""What runs say: runs grouped by spec (grouping.py), the one ranking (compare.py, stats.py), the listing (listing.py).
Reads run directories; never trains, never imports torch."""
