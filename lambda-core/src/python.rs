//! The `lambda_main.py` check: real Python parsing (the ruff parser), not regular expressions.

use crate::names::LambdaType;
use crate::problem::Problem;
use crate::runtime_api;
use ruff_python_ast::{Expr, Stmt, StmtClassDef, StmtFunctionDef};
use ruff_text_size::TextSize;

/// Every problem of `lambda_main.py`: it must parse, define `async def main(request)` (see
/// [`check_main`]; a `tasks` lambda: exactly one `BaseLambdaTask` subclass, see
/// [`task_class_def`]), import only what the runtime provides and give its handlers valid routes
/// (see [`runtime_api::check`]). Returns the 1-based line of `main` (or of the task class), or
/// every problem found.
pub fn check_module(
    source: &str,
    path: &str,
    lambda_type: LambdaType,
) -> Result<u32, Vec<Problem>> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let body = parse(source, path).map_err(|p| vec![p])?;
    let main = match lambda_type {
        LambdaType::Tasks => task_class_def(&body, source, path),
        LambdaType::Standalone | LambdaType::Handlers => main_def(&body, source, path),
    };
    let mut problems = runtime_api::check(&body, source, path);
    match main {
        Ok(line) if problems.is_empty() => Ok(line),
        Ok(_) => Err(problems),
        Err(p) => {
            problems.insert(0, p);
            Err(problems)
        }
    }
}

/// Checks that `source` parses as Python and defines, at module level, `async def main` callable
/// with exactly one positional argument (the request). Returns the 1-based line of that `def`.
///
/// When `main` is defined several times, the last definition wins, as in Python.
pub fn check_main(source: &str, path: &str) -> Result<u32, Problem> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let body = parse(source, path)?;
    main_def(&body, source, path)
}

fn parse(source: &str, path: &str) -> Result<Vec<Stmt>, Problem> {
    match ruff_python_parser::parse_module(source) {
        Ok(p) => Ok(p.into_syntax().body),
        Err(e) => {
            let (line, col) = line_col(source, e.location.start());
            Err(Problem::error(
                "main.syntax_error",
                path,
                format!(
                    "'{path}' is not valid Python: {} (line {line}, column {col})",
                    e.error
                ),
            )
            .at(line, col))
        }
    }
}

fn main_def(body: &[Stmt], source: &str, path: &str) -> Result<u32, Problem> {
    let main = body.iter().rev().find_map(|stmt| match stmt {
        Stmt::FunctionDef(f) if f.name.as_str() == "main" => Some(f),
        _ => None,
    });
    let Some(f) = main else {
        return Err(Problem::error(
            "main.no_main",
            path,
            format!(
                "'{path}' has no top-level `async def main(request)`; the platform calls it for every request"
            ),
        ));
    };
    check_signature(f, source, path)
}

/// The methods a `BaseLambdaTask` subclass must define.
pub const TASK_METHODS: [&str; 2] = ["splitTasksContent", "executeSubtask"];

/// A `tasks` lambda defines, at module level, exactly one class deriving from
/// `BaseLambdaTask`, with `async def splitTasksContent` and `async def executeSubtask`. Returns
/// the 1-based line of that class.
pub fn task_class_def(body: &[Stmt], source: &str, path: &str) -> Result<u32, Problem> {
    let classes: Vec<&StmtClassDef> = body
        .iter()
        .filter_map(|stmt| match stmt {
            Stmt::ClassDef(c) if derives_from(c, "BaseLambdaTask") => Some(c),
            _ => None,
        })
        .collect();
    let class = match classes.as_slice() {
        [one] => *one,
        [] => {
            return Err(Problem::error(
                "tasks.no_task_class",
                path,
                format!(
                    "'{path}' of a tasks lambda defines no BaseLambdaTask subclass; define `class MyTask(BaseLambdaTask)` with `async def splitTasksContent(self, content)` and `async def executeSubtask(self, subTaskContent)`"
                ),
            ));
        }
        [_, second, ..] => {
            let names: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
            let (line, col) = line_col(source, second.range.start());
            return Err(Problem::error(
                "tasks.several_task_classes",
                path,
                format!(
                    "'{path}' defines {} BaseLambdaTask subclasses ({}); a tasks lambda defines exactly one",
                    names.len(),
                    names.join(", ")
                ),
            )
            .at(line, col));
        }
    };
    let (line, col) = line_col(source, class.range.start());
    for method in TASK_METHODS {
        let def = class.body.iter().rev().find_map(|stmt| match stmt {
            Stmt::FunctionDef(f) if f.name.as_str() == method => Some(f),
            _ => None,
        });
        match def {
            None => {
                return Err(Problem::error(
                    "tasks.missing_method",
                    path,
                    format!(
                        "class {} in '{path}' (line {line}) has no `async def {method}`; a task class defines splitTasksContent and executeSubtask",
                        class.name
                    ),
                )
                .at(line, col));
            }
            Some(f) if !f.is_async => {
                let (l, c) = line_col(source, f.range.start());
                return Err(Problem::error(
                    "tasks.not_async",
                    path,
                    format!(
                        "`{method}` of class {} in '{path}' (line {l}) is a plain `def`; it must be `async def`",
                        class.name
                    ),
                )
                .at(l, c));
            }
            Some(_) => {}
        }
    }
    Ok(line)
}

/// Whether a class names `base` among its bases (`class C(base)` or `class C(module.base)`).
pub(crate) fn derives_from(class: &StmtClassDef, base: &str) -> bool {
    class.bases().iter().any(|b| match b {
        Expr::Name(n) => n.id.as_str() == base,
        Expr::Attribute(a) => a.attr.as_str() == base,
        _ => false,
    })
}

fn check_signature(f: &StmtFunctionDef, source: &str, path: &str) -> Result<u32, Problem> {
    let (line, col) = line_col(source, f.range.start());
    if !f.is_async {
        return Err(Problem::error(
            "main.not_async",
            path,
            format!("`main` in '{path}' (line {line}) is a plain `def`; it must be `async def main(request)`"),
        )
        .at(line, col));
    }
    let p = &f.parameters;
    let positional: Vec<_> = p.posonlyargs.iter().chain(p.args.iter()).collect();
    let required = positional.iter().filter(|a| a.default.is_none()).count();
    let required_kwonly = p.kwonlyargs.iter().filter(|a| a.default.is_none()).count();
    let accepts_one = !positional.is_empty() || p.vararg.is_some();
    if required > 1 || !accepts_one || required_kwonly > 0 {
        let found = if positional.is_empty() && p.vararg.is_none() {
            "no positional parameter".to_owned()
        } else if required_kwonly > 0 {
            format!("{required_kwonly} required keyword-only parameter(s)")
        } else {
            format!("{required} required positional parameters")
        };
        return Err(Problem::error(
            "main.bad_signature",
            path,
            format!(
                "`async def main` in '{path}' (line {line}) must take exactly one positional parameter, the request; it has {found}"
            ),
        )
        .at(line, col));
    }
    Ok(line)
}

/// 1-based line and character column of a byte offset.
pub(crate) fn line_col(source: &str, offset: TextSize) -> (u32, u32) {
    let offset = usize::from(offset).min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() as u32 + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(src: &str) -> Result<u32, String> {
        check_main(src, "lambda_main.py").map_err(|p| p.code)
    }

    #[test]
    fn accepts_async_main_with_one_parameter() {
        assert_eq!(
            code("import x\n\nasync def main(request):\n    return {}\n"),
            Ok(3)
        );
        assert_eq!(
            code("async def main(request: 'R') -> dict:\n    return {}\n"),
            Ok(1)
        );
        assert_eq!(
            code("async def main(request, extra=1):\n    return {}\n"),
            Ok(1)
        );
        assert_eq!(code("async def main(*args):\n    return {}\n"), Ok(1));
        assert_eq!(
            code("\u{feff}async def main(r, /):\n    return {}\n"),
            Ok(1)
        );
    }

    #[test]
    fn refuses_sync_missing_and_bad_signatures() {
        assert_eq!(
            code("def main(request):\n    return {}\n"),
            Err("main.not_async".into())
        );
        assert_eq!(
            code("async def other(request):\n    return {}\n"),
            Err("main.no_main".into())
        );
        assert_eq!(
            code("async def main():\n    return {}\n"),
            Err("main.bad_signature".into())
        );
        assert_eq!(
            code("async def main(a, b):\n    return {}\n"),
            Err("main.bad_signature".into())
        );
        assert_eq!(
            code("async def main(a, *, k):\n    return {}\n"),
            Err("main.bad_signature".into())
        );
        // A nested main does not count: only module-level definitions are called.
        assert_eq!(
            code("class A:\n    async def main(self, r):\n        pass\n"),
            Err("main.no_main".into())
        );
        // The last definition wins, as in Python.
        assert_eq!(
            code("async def main(r):\n    pass\ndef main(r):\n    pass\n"),
            Err("main.not_async".into())
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let p = check_main(
            "x = 1\nasync def main(request)\n    return {}\n",
            "lambda_main.py",
        )
        .unwrap_err();
        assert_eq!(p.code, "main.syntax_error");
        assert_eq!(p.line, Some(2));
        assert!(p.column.is_some());
        assert!(p.message.contains("line 2"), "{}", p.message);
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\nцdx", TextSize::from(6)), (2, 3));
    }
}
