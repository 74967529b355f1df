//! A compiler for the few CEL forms access-boundary conditions use, to the parsed CEL AST that
//! client-side downscoped tokens carry (`compiled_availability_condition`).
//!
//! Supported, with `FIELD` one of `name`, `type`, `service` of `resource`, and `"..."` a
//! single- or double-quoted string (escapes `\\ \" \' \n \r \t`):
//!
//! - `resource.FIELD.startsWith("...")`, `resource.FIELD.endsWith("...")`
//! - `resource.FIELD == "..."`
//! - any of them joined with `&&` and `||` (`&&` binds tighter), with parentheses
//!
//! Anything else (other functions, `!`, `!=`, raw or byte strings, macros, `api.getAttribute`) is
//! refused with an error listing these forms; the Security Token Service would otherwise only
//! refuse the token when a Google API sees it. Node ids follow the reference CEL parser (cel-go,
//! cel-java): ids in order of parsing, an operator's id taken after its left operand (and, for
//! `&&`/`||`, after its right one), chains of `&&`/`||` balanced into a tree.

use workload_auth_core::{Error, ErrorKind, Result};

use super::proto::{Call, Constant, ConstantKind, Expr, ExprKind, Ident, Select};

/// Longest expression accepted.
const MAX_LEN: usize = 4096;
/// Deepest nesting of parentheses accepted (the parser recurses on them).
const MAX_DEPTH: usize = 32;

const SUPPORTED: &str = "supported forms: resource.name.startsWith(\"...\"), \
                         resource.name.endsWith(\"...\"), resource.name == \"...\" (also on \
                         resource.type and resource.service), joined with && and || and \
                         parentheses";

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Dot,
    LParen,
    RParen,
    Eq,
    And,
    Or,
}

/// Compiles `expression` (the condition of rule `rule`).
pub(crate) fn compile(expression: &str, rule: usize) -> Result<Expr> {
    let fail = |why: &str| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "access boundary rule {rule}: `availabilityCondition.expression` cannot be \
                 compiled for client-side downscoping: {why}"
            ),
        )
        .with_hint(SUPPORTED)
    };
    if expression.len() > MAX_LEN {
        return Err(fail(&format!("it is longer than {MAX_LEN} bytes")));
    }
    let tokens = lex(expression).map_err(|why| fail(&why))?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        next_id: 0,
        depth: 0,
    };
    let expr = parser.or().map_err(|why| fail(&why))?;
    if parser.pos != parser.tokens.len() {
        return Err(fail("unexpected text after the expression"));
    }
    Ok(expr)
}

fn lex(text: &str) -> std::result::Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '.' => out.push(Token::Dot),
            '(' => out.push(Token::LParen),
            ')' => out.push(Token::RParen),
            '=' if chars.next_if(|(_, c)| *c == '=').is_some() => out.push(Token::Eq),
            '&' if chars.next_if(|(_, c)| *c == '&').is_some() => out.push(Token::And),
            '|' if chars.next_if(|(_, c)| *c == '|').is_some() => out.push(Token::Or),
            '"' | '\'' => {
                let quote = c;
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err("a string is not closed".to_owned()),
                        Some((_, c)) if c == quote => break,
                        Some((_, '\n')) => return Err("a string spans lines".to_owned()),
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, '\'')) => value.push('\''),
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, 'r')) => value.push('\r'),
                            Some((_, 't')) => value.push('\t'),
                            _ => return Err("a string has an unsupported escape".to_owned()),
                        },
                        Some((_, c)) => value.push(c),
                    }
                }
                out.push(Token::Str(value));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::from(c);
                while let Some((_, c)) =
                    chars.next_if(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
                {
                    name.push(c);
                }
                // `r"..."`, `b"..."`: raw and byte strings.
                if chars.peek().is_some_and(|(_, c)| *c == '"' || *c == '\'') {
                    return Err(format!("the string prefix {name:?} is not supported"));
                }
                out.push(Token::Ident(name));
            }
            other => return Err(format!("the character {other:?} is not supported")),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    next_id: i64,
    depth: usize,
}

type Parsed = std::result::Result<Expr, String>;

impl Parser {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: &Token, what: &str) -> std::result::Result<(), String> {
        match self.next() {
            Some(t) if &t == want => Ok(()),
            _ => Err(format!("expected {what}")),
        }
    }

    fn or(&mut self) -> Parsed {
        self.chain(Token::Or, "_||_", Self::and)
    }

    fn and(&mut self) -> Parsed {
        self.chain(Token::And, "_&&_", Self::atom)
    }

    /// `term (op term)*`, balanced as the reference parser does.
    fn chain(&mut self, op: Token, function: &str, term: fn(&mut Self) -> Parsed) -> Parsed {
        let mut terms = vec![term(self)?];
        let mut ops = Vec::new();
        while self.peek() == Some(&op) {
            self.pos += 1;
            terms.push(term(self)?);
            ops.push(self.id());
        }
        if ops.is_empty() {
            return terms.pop().ok_or_else(|| "empty expression".to_owned());
        }
        Ok(balanced(&mut terms, &ops, 0, ops.len() - 1, function))
    }

    fn atom(&mut self) -> Parsed {
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(format!("parentheses nest deeper than {MAX_DEPTH}"));
            }
            let inner = self.or()?;
            self.depth -= 1;
            self.expect(&Token::RParen, "`)`")?;
            return Ok(inner);
        }
        let operand = self.resource_field()?;
        match self.next() {
            Some(Token::Eq) => {
                let id = self.id();
                let value = self.string()?;
                Ok(call(id, None, "_==_", vec![operand, value]))
            }
            Some(Token::Dot) => {
                let function = match self.next() {
                    Some(Token::Ident(f)) if f == "startsWith" || f == "endsWith" => f,
                    Some(Token::Ident(f)) => {
                        return Err(format!("the function {f:?} is not supported"));
                    }
                    _ => return Err("expected a function name after `.`".to_owned()),
                };
                if self.peek() != Some(&Token::LParen) {
                    return Err(format!("expected `(` after {function}"));
                }
                self.pos += 1;
                let id = self.id();
                let arg = self.string()?;
                self.expect(&Token::RParen, "`)` after the one string argument")?;
                Ok(call(id, Some(operand), &function, vec![arg]))
            }
            _ => Err("expected `==`, `.startsWith(` or `.endsWith(` after the field".to_owned()),
        }
    }

    /// `resource.FIELD`.
    fn resource_field(&mut self) -> Parsed {
        match self.next() {
            Some(Token::Ident(name)) if name == "resource" => {}
            Some(Token::Ident(name)) => {
                return Err(format!(
                    "the identifier {name:?} is not supported (only `resource`)"
                ));
            }
            _ => {
                return Err(
                    "expected `resource.name`, `resource.type` or `resource.service`".to_owned(),
                );
            }
        }
        let ident = Expr {
            id: self.id(),
            expr_kind: Some(ExprKind::Ident(Ident {
                name: "resource".to_owned(),
            })),
        };
        self.expect(&Token::Dot, "`.` after `resource`")?;
        let field = match self.next() {
            Some(Token::Ident(f)) if matches!(f.as_str(), "name" | "type" | "service") => f,
            _ => return Err("expected `name`, `type` or `service` after `resource.`".to_owned()),
        };
        Ok(Expr {
            id: self.id(),
            expr_kind: Some(ExprKind::Select(Box::new(Select {
                operand: Some(Box::new(ident)),
                field,
                test_only: false,
            }))),
        })
    }

    fn string(&mut self) -> Parsed {
        match self.next() {
            Some(Token::Str(value)) => Ok(Expr {
                id: self.id(),
                expr_kind: Some(ExprKind::Const(Constant {
                    constant_kind: Some(ConstantKind::StringValue(value)),
                })),
            }),
            _ => Err("expected a string literal".to_owned()),
        }
    }
}

fn call(id: i64, target: Option<Expr>, function: &str, args: Vec<Expr>) -> Expr {
    Expr {
        id,
        expr_kind: Some(ExprKind::Call(Box::new(Call {
            target: target.map(Box::new),
            function: function.to_owned(),
            args,
        }))),
    }
}

/// The balanced tree of `terms[lo..=hi+1]` joined by `ops[lo..=hi]` (cel-go's `balancer`).
fn balanced(terms: &mut [Expr], ops: &[i64], lo: usize, hi: usize, function: &str) -> Expr {
    let mid = (lo + hi).div_ceil(2);
    let left = if mid == lo {
        std::mem::take(&mut terms[mid])
    } else {
        balanced(terms, ops, lo, mid - 1, function)
    };
    let right = if mid == hi {
        std::mem::take(&mut terms[mid + 1])
    } else {
        balanced(terms, ops, mid + 1, hi, function)
    };
    call(ops[mid], None, function, vec![left, right])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string_of(e: &Expr) -> String {
        match &e.expr_kind {
            Some(ExprKind::Const(c)) => match &c.constant_kind {
                Some(ConstantKind::StringValue(s)) => format!("{}:{s:?}", e.id),
                None => "?".into(),
            },
            Some(ExprKind::Ident(i)) => format!("{}:{}", e.id, i.name),
            Some(ExprKind::Select(s)) => format!(
                "{}:{}.{}",
                e.id,
                s.operand.as_deref().map(string_of).unwrap_or_default(),
                s.field
            ),
            Some(ExprKind::Call(c)) => format!(
                "{}:{}[{}]({})",
                e.id,
                c.function,
                c.target.as_deref().map(string_of).unwrap_or_default(),
                c.args.iter().map(string_of).collect::<Vec<_>>().join(",")
            ),
            None => "?".into(),
        }
    }

    #[test]
    fn ids_follow_the_reference_parser() {
        let e = compile(
            "resource.name.startsWith('projects/_/buckets/b/objects/a')",
            0,
        )
        .unwrap();
        assert_eq!(
            string_of(&e),
            "3:startsWith[2:1:resource.name](4:\"projects/_/buckets/b/objects/a\")"
        );
        let e = compile("resource.name == \"x\"", 0).unwrap();
        assert_eq!(string_of(&e), "3:_==_[](2:1:resource.name,4:\"x\")");
        let e = compile(
            "resource.name == 'a' || resource.name == 'b' || resource.type == 'c'",
            0,
        )
        .unwrap();
        // Terms 1-4, 5-8 (op 9), 10-13 (op 14); balanced: the middle op is the root.
        assert_eq!(
            string_of(&e),
            "14:_||_[](9:_||_[](3:_==_[](2:1:resource.name,4:\"a\"),7:_==_[](6:5:resource.name,8:\"b\")),12:_==_[](11:10:resource.type,13:\"c\"))"
        );
        let e = compile(
            "(resource.name == 'a') && resource.service.endsWith('x')",
            0,
        )
        .unwrap();
        assert!(string_of(&e).starts_with("9:_&&_"), "{}", string_of(&e));
    }

    #[test]
    fn unsupported_forms_are_refused_listing_the_supported_ones() {
        for bad in [
            "",
            "true",
            "resource.name.contains('a')",
            "resource.name != 'a'",
            "!resource.name.startsWith('a')",
            "request.time < timestamp('2030-01-01T00:00:00Z')",
            "resource.name == r'a'",
            "resource.name == 'a",
            "resource.name.startsWith('a', 'b')",
            "resource.name == 'a' &&",
            &format!("{}resource.name == 'a'{}", "(".repeat(40), ")".repeat(40)),
        ] {
            let e = compile(bad, 2).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(
                e.message()
                    .contains("rule 2: `availabilityCondition.expression`"),
                "{e}"
            );
            assert!(e.hint().unwrap_or("").contains("startsWith"), "{bad}");
        }
    }
}
