"""Fakes and contract suites shipped with the package, for autopeft's tests and for users'.

Nothing here is imported by `import autopeft`.
"""
