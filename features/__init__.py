"""The data contract and feature engineering: data config, validation, the feature builder (text,
lexicon, merchant history) and the score calibrator.

Imported by `decision`, `bundle`, `training` and `serving`; imports none of them.
"""
