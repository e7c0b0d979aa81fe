"""Search: queries against an index, embedded in the space of the rows they are compared with.

May import: `io/`, `video/`, `models/`, `index/`, `config`. The CLI (`tara-batch search`) is a thin layer over it.

    session.py   SearchSession: open the live version (or a chosen one), text / video queries, result formatting
"""
