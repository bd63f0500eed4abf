"""``python -m juicectl.child package.module:Worker``: serve a worker on stdin/stdout."""

from juicectl.child._main import main

if __name__ == "__main__":
    main()
