"""A calculator MCP server: arithmetic on numbers, and a safe expression evaluator (no eval()).

python examples/mcp_servers/calculator.py                      # stdio
python examples/mcp_servers/calculator.py --transport http --port 8765   # http://127.0.0.1:8765/mcp
"""

from __future__ import annotations

import ast
import operator
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _run import run

server = MCPServer("calculator", log_level="WARNING", instructions="Exact arithmetic. Use it instead of computing in your head.")

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


@server.tool()
def evaluate(expression: str) -> float:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses, e.g. '(2 + 3) * 4'."""
    if len(expression) > 500:
        raise ToolError("expression longer than 500 characters")
    return _eval(ast.parse(expression, mode="eval").body)


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ToolError("exponent larger than 100")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ToolError(f"unsupported syntax: {ast.dump(node)[:80]}")


if __name__ == "__main__":
    run(server)
