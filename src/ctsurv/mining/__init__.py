"""Report mining: word frequencies, the top medical words and their bar plot."""

from .outputs import write_mining_outputs
from .plot import plot_top_words
from .reports import read_report_texts
from .tokenize import tokenize
from .words import mine_words, top_words

__all__ = ["mine_words", "plot_top_words", "read_report_texts", "tokenize", "top_words", "write_mining_outputs"]
