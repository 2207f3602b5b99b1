"""The exported model bundle (`models/<version>/`): integrity (`manifest`), the policies kept in it
(`policies`) and loading a verified bundle for scoring (`load`).

Above `features` and `decision` (it loads their fitted state); imported by `training` and `serving`.
"""
