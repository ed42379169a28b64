"""Running a site: the router and its proxies, accounts and credentials,
authorization rules, settings and local ports.
"""
