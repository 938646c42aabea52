# Root marker: puts the repository root on sys.path so tests import tests.fakes.
