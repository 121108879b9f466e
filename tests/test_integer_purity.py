"""No data multiply, divide, modulo, power or float anywhere on the integer datapath.

The RTL has no multipliers, so the golden models it reproduces must not need one. These tests parse
every module of the integer datapath (and the per-sample functions of host modules that the datapath
calls) and fail on:
  * the operators ``*``, ``/``, ``//``, ``%``, ``**``, ``@`` (plain and augmented);
  * functions that multiply, divide or leave the integers (``np.dot``, ``matmul``, ``einsum``,
    ``multiply``, ``.prod()``, ``sqrt`` ... referenced anywhere, ``bincount`` with weights);
  * float dtypes (``np.float64``, ``float(...)``, ``"float64"``): the integer models stay integers.
There are two kinds of exception. Both are listed here, and both must still match the code, so a stale
entry fails too:
  * ``FAST_PATHS``: the float64 helpers of fixedpoint.py, exact by the bound they check first and tested
    equal to their integer definitions (tests/test_integer_sums.py); only the float product or
    scatter they exist for is allowed in them;
  * ``SHAPE_ARITHMETIC``: single lines of shape arithmetic, matched by their exact source text, so any
    edit to such a line fails here until it is reviewed again.
"""

import ast
import functools
import inspect
import textwrap

from mfsnn.golden import data, desire, fixedpoint, hashing, stidi, stidi_fixed

#: Whole modules of the integer datapath: every function and the module level.
DATAPATH_MODULES = (fixedpoint, desire, stidi_fixed, hashing)
#: Host modules whose named functions run per sample on the integer path (the rest is host-side
#: constants, the float reference and I/O, where products are fine).
DATAPATH_FUNCTIONS = {
    stidi: ("_StidiLearner.keep_mask", "_StidiLearner.encode"),
    data: ("downsample2x2", "input_pixels"),
}
#: The guarded float64 fast paths of fixedpoint.py and what each may do; each must call
#: ``check_float64_exact`` before it.
FAST_PATHS = {"select_sum": {"float64", "MatMult"}, "scatter_sum": {"float64", "weighted bincount"},
              "MirroredWords.__init__": {"float64"},          # the float64 copy of the words, made once
              "MirroredWords.select_rows": {"float64", "MatMult"},
              "MirroredWords.select_columns": {"float64", "MatMult"}}
#: (module, function, stripped source line) of shape arithmetic on Python ints.
SHAPE_ARITHMETIC = {
    ("stidi", "_StidiLearner.keep_mask", "n = int(np.prod(shape))"),     # element count of the mask
}

BANNED_OPERATORS = (ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.MatMult)
BANNED_FUNCTIONS = frozenset({
    "dot", "vdot", "matmul", "einsum", "multiply", "tensordot", "inner", "outer", "kron", "prod", "cumprod",
    "divide", "true_divide", "floor_divide", "remainder", "mod", "fmod", "divmod", "power", "float_power",
    "mul", "truediv", "floordiv", "pow", "convolve", "correlate", "mean", "average",
    "sqrt", "exp", "log", "log2", "log10", "linalg",
})
FLOAT_NAMES = frozenset({"float", "float16", "float32", "float64", "float_", "double", "longdouble",
                         "f2", "f4", "f8"})


class _Finder(ast.NodeVisitor):
    """Collects (function qualname, line number, what) of every banned construct."""

    def __init__(self):
        self.scope = []
        self.found = []
        self.defined = set()

    def _add(self, node, what):
        self.found.append((".".join(self.scope) or "<module>", node.lineno, what))

    def _visit_scope(self, node):
        self.scope.append(node.name)
        self.defined.add(".".join(self.scope))
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _visit_scope

    def visit_BinOp(self, node):
        if isinstance(node.op, BANNED_OPERATORS):
            self._add(node, type(node.op).__name__)
        self.generic_visit(node)

    visit_AugAssign = visit_BinOp

    def visit_Attribute(self, node):
        if node.attr in BANNED_FUNCTIONS or node.attr in FLOAT_NAMES:
            self._add(node, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if isinstance(node.func, ast.Name) and (name in BANNED_FUNCTIONS or name in FLOAT_NAMES):
            self._add(node, name)
        if name == "bincount" and (len(node.args) > 1 or any(k.arg == "weights" for k in node.keywords)):
            self._add(node, "weighted bincount")
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in FLOAT_NAMES - {"float"}:       # float(...) is caught as a call; np.float64 as attribute
            self._add(node, node.id)

    def visit_Constant(self, node):
        if isinstance(node.value, str) and node.value in FLOAT_NAMES:
            self._add(node, f"dtype {node.value!r}")


def scan(source: str) -> _Finder:
    finder = _Finder()
    finder.visit(ast.parse(source))
    return finder


def _module_name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def datapath_findings() -> list[tuple[str, str, str, str]]:
    """(module, function, stripped source line, what) of every banned construct on the datapath."""
    findings = []
    for module in DATAPATH_MODULES + tuple(DATAPATH_FUNCTIONS):
        source = inspect.getsource(module)
        lines = source.splitlines()
        scope = DATAPATH_FUNCTIONS.get(module)
        for function, lineno, what in scan(source).found:
            if scope is None or any(function == f or function.startswith(f + ".") for f in scope):
                findings.append((_module_name(module), function, lines[lineno - 1].strip(), what))
    return findings


def _allowed(finding) -> bool:
    module, function, line, what = finding
    return ((module == "fixedpoint" and what in FAST_PATHS.get(function, ()))
            or (module, function, line) in SHAPE_ARITHMETIC)


def test_integer_datapath_multiplies_nothing_outside_the_listed_exceptions():
    assert [finding for finding in datapath_findings() if not _allowed(finding)] == []


def test_every_exception_is_still_needed():
    findings = datapath_findings()
    assert {(function, what) for module, function, _, what in findings if module == "fixedpoint"} \
        >= {(function, what) for function, allowed in FAST_PATHS.items() for what in allowed}
    assert {finding[:3] for finding in findings} >= SHAPE_ARITHMETIC


def test_every_listed_function_exists():
    for module, functions in DATAPATH_FUNCTIONS.items():
        assert set(functions) <= scan(inspect.getsource(module)).defined, module.__name__


def test_fast_paths_check_the_float64_bound_before_any_float():
    for function in FAST_PATHS:
        source = textwrap.dedent(inspect.getsource(functools.reduce(getattr, function.split("."), fixedpoint)))
        checks = [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                  and getattr(node.func, "id", None) == "check_float64_exact"]
        first_float = min(lineno for _, lineno, _ in scan(source).found)
        assert checks and min(checks) < first_float, function


def test_the_finder_catches_every_kind_of_multiply():
    source = textwrap.dedent("""
        def f(a, b, i):
            a * b; a / b; a // b; a % b; a ** b; a @ b
            a *= b; a //= 2
            np.dot(a, b); a.dot(b); np.einsum("i,i", a, b); np.multiply.reduce(a); a.prod(); prod(a)
            np.bincount(i, weights=a); np.bincount(i, a)
            a.astype(np.float64); float(a); a.astype("float64"); np.sqrt(a)
            np.bincount(i); a + b; a << 2; a >> 1; a & b; a ^ b; np.sum(a); np.add.reduceat(a, i)
    """)
    found = [what for _, _, what in scan(source).found]
    assert found == ["Mult", "Div", "FloorDiv", "Mod", "Pow", "MatMult", "Mult", "FloorDiv",
                     "dot", "dot", "einsum", "multiply", "prod", "prod",
                     "weighted bincount", "weighted bincount",
                     "float64", "float", "dtype 'float64'", "sqrt"]
