"""Whole-song valence pipeline: `pipeline(model=repo_or_dir, trust_remote_code=True)("full lyrics ...")`.

This file travels to the Hub next to the weights, so it imports transformers only.
"""

from transformers import Pipeline


class LyricValencePipeline(Pipeline):
    """
    Scores whole songs: each text is split into overlapping chunks of `config.max_length` tokens (`config.stride`
    shared), the chunks are scored, and their scores are combined with `config.aggregation` (mean by default).
    Returns `[{"label": "valence", "score": x}]` per input text, like the text-classification pipeline.
    """

    def __call__(self, inputs, **kwargs):
        """Score one song (a string) or many (a list of strings)."""
        result = super().__call__(inputs, **kwargs)
        return [result] if isinstance(inputs, str) else result

    def _sanitize_parameters(self, batch_tokens=None, **kwargs):
        forward_params = {} if batch_tokens is None else {"batch_tokens": batch_tokens}
        return {}, forward_params, {}

    def preprocess(self, text):
        return {"text": text}

    def _forward(self, model_inputs, batch_tokens=None):
        score = self.model.score_songs([model_inputs["text"]], self.tokenizer, batch_tokens=batch_tokens)[0]
        return {"score": score}

    def postprocess(self, model_outputs):
        return {"label": self.model.config.id2label[0], "score": model_outputs["score"]}
