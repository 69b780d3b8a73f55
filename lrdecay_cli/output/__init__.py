"""What a person sees: the console (console.py: tables, notes, errors, live progress), figures (plot.py),
the HTML report (page.py) and a study's report (study_report.py)."""
