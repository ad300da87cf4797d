"""No SQL built by string formatting: every execute()/copy() gets a constant string or a
psycopg.sql composition, with values passed as parameters."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SQL_CALLS = {"execute", "executemany", "copy", "stream"}
# (file, function): reviewed exceptions, with the reason.
ALLOWED = {
    # Inlines only an int, a [a-z0-9_]+ file name and a hex checksum, so that migrations also run on
    # TimescaleDB-in-WASM, which supports the simple query protocol only.
    ("connectors/postgres/migrate.py", "migrate"),
}


def _is_formatted_string(node: ast.expr) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return _is_str(node.left) or _is_str(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _is_str(node.func.value)
    return False


def _is_str(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or _is_formatted_string(node)


def formatted_sql_calls(root: Path, base: Path = REPO) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(base).as_posix()
        tree = ast.parse(path.read_text(), rel)
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SQL_CALLS
                    and node.args
                    and _is_formatted_string(node.args[0])
                    and (rel, func.name) not in ALLOWED
                ):
                    found.append(f"{rel}:{node.lineno} in {func.name}()")
    return found


def test_no_string_formatted_sql_in_the_code():
    for folder in ("connectors", "operators", "flows", "twinflow", "benchmarks"):
        assert formatted_sql_calls(REPO / folder) == [], f"string-formatted SQL in {folder}/"


def test_the_check_finds_formatted_sql(tmp_path):
    (tmp_path / "probe.py").write_text(
        "def f(conn, t):\n"
        "    conn.execute(f\"SELECT * FROM x WHERE t = '{t}'\")\n"
        "    conn.execute('SELECT %s' % t)\n"
        "    conn.execute('SELECT {}'.format(t))\n"
        "    conn.execute('SELECT * FROM x WHERE t = %s', (t,))\n"
    )
    assert len(formatted_sql_calls(tmp_path, tmp_path)) == 3
