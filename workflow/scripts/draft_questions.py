"""Rule draft_questions: an LLM drafts question templates from the top words (for review)."""

from ctsurv.errors import ConfigError
from ctsurv.mining.draft import openai_complete, write_draft_questions
from ctsurv.scripting import run_step


def main(smk):
    url, model = smk.params.url, smk.params.model
    if not url or not model:
        raise ConfigError(
            "rule draft_questions needs an OpenAI-compatible server: set mining.draft_url and "
            "mining.draft_model (or extraction.url and extraction.model) in the config"
        )
    write_draft_questions(smk.input.top, smk.output.draft, openai_complete(url, model), model=model)


run_step(snakemake, main)  # noqa: F821
