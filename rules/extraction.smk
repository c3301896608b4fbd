# Answer extraction: the six questions answered from each report (rules, transformers, OpenAI-compatible / vLLM).
