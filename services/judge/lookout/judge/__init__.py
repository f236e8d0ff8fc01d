"""lookout.judge: toxicity, evaluator-LLM rubric scores and reference metrics for every
LLM call on llm.events, produced to llm.scores."""
