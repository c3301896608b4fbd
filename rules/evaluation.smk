# Evaluation: metrics, Kaplan-Meier figures, the results table.
