"""The instruction for drafting question templates (kept apart so its wording is easy to review)."""

PROMPT = """You are helping radiologists design questions that a model will answer from chest CT reports.
These are the most over-represented words of the reports, most characteristic first:
{words}

Draft {n} short, radiology-style questions that together cover the findings these words describe
(for example tumor location and size, lymph nodes, pleura, metastases, vessels, bones).
Each question must be answerable from a single report.
Reply with only a JSON object of the form
{{"questions": [{{"id": "snake_case_id", "text": "the question?"}}]}}"""
