"""`conda-safeguard` and `python -m conda_safeguard`: the entry the shell snippets call.

Exit codes (a contract with the shell snippets): 0 ok; 1 expected error (message on stderr);
2 usage; 3 internal error (traceback); 4 refused (a protected env was not destroyed); 130 ^C.
"""

from __future__ import annotations

import json
import sys
import traceback

from .constants import EXIT_INTERNAL, EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    from .cli import build_parser, execute
    from .exceptions import SafeguardError

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv=argv).parse_args(argv)
    try:
        return execute(args)
    except SafeguardError as e:
        if getattr(args, "json", False):
            json.dump({"error": type(e).__name__, "message": str(e), "exit_code": e.exit_code},
                      sys.stdout)
            sys.stdout.write("\n")
        print(f"conda-safeguard: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("conda-safeguard: interrupted; nothing was changed after this point.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception:
        traceback.print_exc()
        print("conda-safeguard: internal error (a bug): please report it with the traceback above.",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
