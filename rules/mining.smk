# Report mining: word frequencies, top medical words, bar plot.
