"""What runs say: runs grouped by their specs (grouping.py), the one ranking with its statistics
(compare.py, stats.py), and the listing of a runs directory (listing.py). Reads run directories;
never trains, never imports torch."""
