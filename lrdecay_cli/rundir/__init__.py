"""The run directory, one concept: its layout (file names, statuses, effective status), the writing side
(record.py: RunDir, RunRecord), the reading side (read.py: Run, targets), its files and lock (fs.py,
csvfile.py) and its TensorBoard events. No torch import."""
