"""GitHub: cross-repo branches and linked pull requests, remote schema reading, deployment records, DORA figures.

`github3` is imported only in this package (infra/github/client.py builds the one client every module uses);
the token comes only from GITHUB_TOKEN and is never printed.
"""
