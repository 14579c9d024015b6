//! What `lambda_main.py` may use of the runtime, checked statically at upload.
//!
//! - **Imports** of `luna_lambda_tools` modules and names must exist in the runtime. The list is
//!   [`MANIFEST`] (`runtime_api.json`), generated from the runtime package by
//!   `lambda-build/runtime-tests/gen_manifest.py`; a test there checks that the committed file
//!   equals the runtime, so the validator and the runtime never drift.
//! - **Routes** of `LambdaUserHandler` classes given as a literal `route = "..."` must be
//!   well-formed and collide neither with the runtime's routes nor with each other (the runtime
//!   checks the same at startup, for routes that are not literals). The reserved paths and the
//!   parameter types come from the same manifest.

use crate::problem::Problem;
use crate::python::{derives_from, line_col};
use ruff_python_ast::statement_visitor::{StatementVisitor, walk_stmt};
use ruff_python_ast::{Expr, Stmt, StmtClassDef};
use ruff_text_size::{Ranged, TextSize};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The runtime's API manifest (JSON), generated from the runtime package.
pub const MANIFEST: &str = include_str!("runtime_api.json");

/// The runtime's top-level package.
pub const PACKAGE: &str = "luna_lambda_tools";

#[derive(Debug, Deserialize)]
struct Manifest {
    modules: BTreeMap<String, ModuleApi>,
    routes: RouteRules,
}

/// The runtime's rules of handler routes (`luna_lambda_tools.user_handlers`).
#[derive(Debug, Deserialize)]
struct RouteRules {
    /// Paths a handler may not take.
    reserved: Vec<String>,
    /// Parameter types of `<name:type>`.
    param_types: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ModuleApi {
    names: Vec<String>,
    public: Vec<String>,
}

fn manifest() -> &'static Manifest {
    static PARSED: OnceLock<Manifest> = OnceLock::new();
    PARSED.get_or_init(|| {
        // The manifest is embedded at compile time and checked by tests: it always parses.
        serde_json::from_str(MANIFEST).unwrap_or_else(|e| panic!("runtime_api.json: {e}"))
    })
}

/// Paths the runtime serves itself (a handler may not take them).
pub fn reserved_routes() -> &'static [String] {
    &manifest().routes.reserved
}

/// Path parameter types of handler routes (Sanic's syntax: `<name:type>`).
pub fn param_types() -> &'static [String] {
    &manifest().routes.param_types
}

/// Whether the runtime has module `module` (dotted).
pub fn has_module(module: &str) -> bool {
    manifest().modules.contains_key(module)
}

/// Whether `from module import name` works in the runtime.
pub fn has_name(module: &str, name: &str) -> bool {
    manifest()
        .modules
        .get(module)
        .is_some_and(|m| m.names.binary_search_by(|n| n.as_str().cmp(name)).is_ok())
}

/// The documented names of `module` (empty for an unknown module).
pub fn public_names(module: &str) -> &'static [String] {
    manifest()
        .modules
        .get(module)
        .map_or(&[], |m| m.public.as_slice())
}

/// Every problem with imports of the runtime and handler routes in a parsed `lambda_main.py`.
pub fn check(body: &[Stmt], source: &str, path: &str) -> Vec<Problem> {
    let mut imports = Imports {
        source,
        path,
        problems: Vec::new(),
    };
    imports.visit_body(body);
    let mut problems = imports.problems;
    problems.extend(check_routes(body, source, path));
    problems
}

struct Imports<'s> {
    source: &'s str,
    path: &'s str,
    problems: Vec<Problem>,
}

impl Imports<'_> {
    fn at(&self, offset: TextSize, problem: Problem) -> Problem {
        let (line, col) = line_col(self.source, offset);
        problem.at(line, col)
    }

    fn unknown_module(&self, module: &str, offset: TextSize) -> Problem {
        // The deepest parent that exists, and what it holds.
        let mut parent = module;
        while let Some((p, _)) = parent.rsplit_once('.') {
            parent = p;
            if has_module(parent) {
                break;
            }
        }
        let missing = module
            .strip_prefix(parent)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.split('.').next())
            .unwrap_or(module);
        let message = format!(
            "'{path}' imports {module}, which the platform's runtime does not provide: {parent} has no module '{missing}'; it provides {}",
            list(public_names(parent)),
            path = self.path,
        );
        self.at(
            offset,
            Problem::error("import.unknown_module", self.path, message),
        )
    }

    fn import(&mut self, module: &str, offset: TextSize) {
        if is_runtime(module) && !has_module(module) {
            let p = self.unknown_module(module, offset);
            self.problems.push(p);
        }
    }

    fn import_from(&mut self, module: &str, names: &[(String, TextSize)], offset: TextSize) {
        if !is_runtime(module) {
            return;
        }
        if !has_module(module) {
            let p = self.unknown_module(module, offset);
            self.problems.push(p);
            return;
        }
        for (name, at) in names {
            if name != "*" && !has_name(module, name) {
                let message = format!(
                    "'{path}' imports {name} from {module}, which has no such name in the platform's runtime; it provides {}",
                    list(public_names(module)),
                    path = self.path,
                );
                let p = self.at(
                    *at,
                    Problem::error("import.unknown_name", self.path, message),
                );
                self.problems.push(p);
            }
        }
    }
}

impl<'a> StatementVisitor<'a> for Imports<'_> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        match stmt {
            Stmt::Import(i) => {
                for alias in &i.names {
                    self.import(alias.name.as_str(), alias.start());
                }
            }
            Stmt::ImportFrom(i) if i.level == 0 => {
                if let Some(module) = &i.module {
                    let names: Vec<(String, TextSize)> = i
                        .names
                        .iter()
                        .map(|a| (a.name.to_string(), a.start()))
                        .collect();
                    self.import_from(module.as_str(), &names, i.start());
                }
            }
            _ => walk_stmt(self, stmt),
        }
    }
}

fn is_runtime(module: &str) -> bool {
    module == PACKAGE
        || module
            .strip_prefix(PACKAGE)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

/// Checks the literal routes of top-level `LambdaUserHandler` subclasses.
fn check_routes(body: &[Stmt], source: &str, path: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    for stmt in body {
        let Stmt::ClassDef(class) = stmt else {
            continue;
        };
        if !derives_from(class, "LambdaUserHandler") {
            continue;
        }
        let Some((route, offset)) = literal_route(class) else {
            continue;
        };
        let (line, col) = line_col(source, offset);
        let name = class.name.as_str();
        let problem = |code: &str, message: String| {
            Problem::error(code, path, format!("'{path}', class {name}: {message}")).at(line, col)
        };
        match route_shape(&route) {
            Err(why) => problems.push(problem(
                "routes.invalid",
                format!("route {route:?} {why}"),
            )),
            Ok(shape) if reserved_routes().contains(&shape) => problems.push(problem(
                "routes.reserved",
                format!(
                    "route {route:?} collides with the runtime's route {shape} ({}); choose another path",
                    reserved_routes().join(", ")
                ),
            )),
            Ok(shape) => {
                if let Some((other, other_route)) = seen.get(&shape) {
                    problems.push(problem(
                        "routes.duplicate",
                        format!("route {route:?} collides with {other}.route {other_route:?}; two handlers cannot serve the same path"),
                    ));
                } else {
                    seen.insert(shape, (name.to_owned(), route.clone()));
                }
            }
        }
    }
    problems
}

/// The class's `route = "..."` (the last one, as in Python), when it is a string literal.
fn literal_route(class: &StmtClassDef) -> Option<(String, TextSize)> {
    class.body.iter().rev().find_map(|stmt| {
        let (target, value) = match stmt {
            Stmt::Assign(a) if a.targets.len() == 1 => (&a.targets[0], Some(&*a.value)),
            Stmt::AnnAssign(a) => (&*a.target, a.value.as_deref()),
            _ => return None,
        };
        match (target, value) {
            (Expr::Name(n), Some(Expr::StringLiteral(s))) if n.id.as_str() == "route" => {
                Some((s.value.to_str().to_owned(), s.start()))
            }
            _ => None,
        }
    })
}

/// The shape of a route (each parameter as `<>`, no trailing `/`) or why it is malformed.
/// The same rules as the runtime's `luna_lambda_tools.user_handlers.Route`.
pub fn route_shape(route: &str) -> Result<String, String> {
    if !route.starts_with('/') {
        return Err("must start with '/'".to_owned());
    }
    let mut shape = String::new();
    let mut params: Vec<&str> = Vec::new();
    let mut rest = route;
    while let Some(open) = rest.find('<') {
        let literal = &rest[..open];
        if literal.contains('>') {
            return Err("has an unbalanced '>'".to_owned());
        }
        shape.push_str(literal);
        let after = &rest[open + 1..];
        let Some(close) = after
            .find(['>', '<', '/'])
            .filter(|&i| after[i..].starts_with('>'))
        else {
            return Err("has a '<' without its '>'".to_owned());
        };
        let inner = &after[..close];
        let (name, kind) = inner.split_once(':').unwrap_or((inner, "str"));
        if !is_identifier(name) {
            return Err(format!(
                "has parameter <{inner}>, which needs a Python name"
            ));
        }
        if !param_types().iter().any(|t| t == kind) {
            return Err(format!(
                "has parameter type {kind:?}, which is not one of {}",
                param_types().join(", ")
            ));
        }
        if params.contains(&name) {
            return Err(format!("names parameter {name:?} twice"));
        }
        params.push(name);
        shape.push_str("<>");
        rest = &after[close + 1..];
    }
    if rest.contains('>') {
        return Err("has an unbalanced '>'".to_owned());
    }
    shape.push_str(rest);
    let trimmed = shape.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<Problem> {
        let parsed = ruff_python_parser::parse_module(src).unwrap();
        check(&parsed.syntax().body, src, "lambda_main.py")
    }

    fn codes(src: &str) -> Vec<String> {
        problems(src).into_iter().map(|p| p.code).collect()
    }

    #[test]
    fn manifest_parses_and_holds_the_documented_api() {
        assert!(has_module("luna_lambda_tools.public.metrics.user_metrics"));
        assert!(has_name(
            "luna_lambda_tools.public.metrics.user_metrics",
            "Counter"
        ));
        assert!(has_name(
            "luna_lambda_tools.public.user_handlers.base_handler",
            "LambdaUserHandler"
        ));
        assert!(has_name("luna_lambda_tools", "StandaloneLambdaRequest"));
        assert!(has_name("luna_lambda_tools.public", "metrics"));
        assert!(!has_module("luna_lambda_tools.private"));
        // Names are sorted (binary search relies on it).
        for m in manifest().modules.values() {
            assert!(m.names.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn documented_imports_pass() {
        let src = "\
import luna_lambda_tools
import luna_lambda_tools.public.metrics.user_metrics as um
from luna_lambda_tools import StandaloneLambdaRequest, logger
from luna_lambda_tools.public.metrics.user_metrics import Counter, Gauge, Histogram, Summary
from luna_lambda_tools.public.run import run
from luna_lambda_tools.public import metrics
from luna_lambda_tools.public.clients.faces import Faces
from luna_lambda_tools.public.exceptions import *
from . import sibling
import os, json
from collections import OrderedDict
";
        assert_eq!(codes(src), Vec::<String>::new());
    }

    #[test]
    fn the_originals_documented_names_of_parity_2_pass_and_misspellings_do_not() {
        let src = "\
from luna_lambda_tools import lambdaConfig
from luna_lambda_tools.public.metrics.user_metrics import Histogram, monitorLastActivity
from luna_lambda_tools.public.monitoring import CustomMonitoringPoint, monitorLastActivity
from luna_lambda_tools.public.handlers.schemas import EventSourceSchema, EventSourceAggregated, DetectTs, Angles
from luna_lambda_tools.public.handlers.schemas import EventSourceNonAggregatedRawImage, RawDetection, ImageOrigin
from luna_lambda_tools.public.schemas.base import BoundingBox, Location, GeoPosition
";
        assert_eq!(codes(src), Vec::<String>::new());
        let src = "\
from luna_lambda_tools.public.monitoring import CustomMonitorPoint
from luna_lambda_tools.public.handlers.schemas import EventSourceSchema, EventSourceAgregated
";
        let ps = problems(src);
        let got: Vec<(&str, Option<u32>, Option<u32>)> = ps
            .iter()
            .map(|p| (p.code.as_str(), p.line, p.column))
            .collect();
        assert_eq!(
            got,
            [
                ("import.unknown_name", Some(1), Some(49)),
                ("import.unknown_name", Some(2), Some(74)),
            ]
        );
        assert!(
            ps[0].message.contains("CustomMonitoringPoint"),
            "{}",
            ps[0].message
        );
    }

    #[test]
    fn unknown_modules_and_names_are_problems_with_position_and_what_exists() {
        let src = "import os\n\ndef f():\n    from luna_lambda_tools.public.metrics.user_metric import Counter\n\nfrom luna_lambda_tools.public.metrics.user_metrics import Counter, Meter\nimport luna_lambda_tools.private.x\n";
        let ps = problems(src);
        assert_eq!(ps.len(), 3, "{ps:#?}");
        assert_eq!(ps[0].code, "import.unknown_module");
        assert_eq!((ps[0].line, ps[0].column), (Some(4), Some(5)));
        assert!(
            ps[0]
                .message
                .contains("luna_lambda_tools.public.metrics has no module 'user_metric'; it provides Counter, Gauge, Histogram, Summary, user_metrics"),
            "{}",
            ps[0].message
        );
        assert_eq!(ps[1].code, "import.unknown_name");
        assert_eq!((ps[1].line, ps[1].column), (Some(6), Some(68)));
        assert!(
            ps[1]
                .message
                .contains("imports Meter from luna_lambda_tools.public.metrics.user_metrics")
                && ps[1]
                    .message
                    .contains("Counter, DEFAULT_BUCKETS, Gauge, Histogram"),
            "{}",
            ps[1].message
        );
        assert_eq!(ps[2].code, "import.unknown_module");
        assert!(
            ps[2]
                .message
                .contains("luna_lambda_tools has no module 'private'"),
            "{}",
            ps[2].message
        );
    }

    #[test]
    fn literal_routes_are_checked() {
        let src = "\
from luna_lambda_tools.public.user_handlers import base_handler
from luna_lambda_tools import LambdaUserHandler

class A(LambdaUserHandler):
    route = '/items/<item_id:int>'

class B(base_handler.LambdaUserHandler):
    route: str = '/items/<other>/'

class C(LambdaUserHandler):
    route = '/metrics'

class D(LambdaUserHandler):
    route = 'items'

class E(LambdaUserHandler):
    route = '/x/<a:date>'

class F(LambdaUserHandler):
    route = ROUTE

class NotAHandler:
    route = '/main'
";
        let ps = problems(src);
        let got: Vec<(&str, Option<u32>)> = ps.iter().map(|p| (p.code.as_str(), p.line)).collect();
        assert_eq!(
            got,
            [
                ("routes.duplicate", Some(8)),
                ("routes.reserved", Some(11)),
                ("routes.invalid", Some(14)),
                ("routes.invalid", Some(17)),
            ]
        );
        assert!(
            ps[0]
                .message
                .contains("collides with A.route \"/items/<item_id:int>\""),
            "{}",
            ps[0].message
        );
        assert!(
            ps[1]
                .message
                .contains("collides with the runtime's route /metrics"),
            "{}",
            ps[1].message
        );
        assert!(
            ps[3].message.contains("\"date\", which is not one of"),
            "{}",
            ps[3].message
        );
    }

    #[test]
    fn route_shapes() {
        assert_eq!(route_shape("/"), Ok("/".to_owned()));
        assert_eq!(route_shape("/a/<b>/c/"), Ok("/a/<>/c".to_owned()));
        assert_eq!(
            route_shape("/lambda_metrics/"),
            Ok("/lambda_metrics".to_owned())
        );
        assert!(route_shape("/a/<b").is_err());
        assert!(route_shape("/a/b>").is_err());
        assert!(route_shape("/a/<1b>").is_err());
        assert!(route_shape("/a/<b>/<b:int>").is_err());
        assert!(route_shape("/a/<b/c>").is_err());
    }
}
