//! From a model's answer to a program: fenced-block extraction, tabs to spaces, and the
//! HumanEval assembly of the Qwen2.5-Coder evaluation (keep the prompt's imports when the
//! answer defines the entry point, otherwise append the answer to the prompt).

/// The code in `answer`. When the prompt already opened a ```python fence, the answer is code
/// up to the closing fence (the stop string usually cut it already). Otherwise the fenced
/// block that defines `entry_point` (else the longest block) is taken; an answer without a
/// fence is taken whole.
pub fn code_from_answer(answer: &str, fence_open: bool, entry_point: &str) -> String {
    if fence_open {
        let end = answer.find("```").unwrap_or(answer.len());
        return answer[..end].to_string();
    }
    let blocks = fenced_blocks(answer);
    if blocks.is_empty() {
        return answer.to_string();
    }
    blocks
        .iter()
        .find(|b| defines(b, entry_point))
        .or_else(|| blocks.iter().max_by_key(|b| b.len()))
        .map(|b| b.to_string())
        .unwrap_or_default()
}

/// The contents of every ``` fenced block (the language tag line dropped); an unclosed last
/// fence runs to the end of the text.
pub fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        // The info string ("python", "py", nothing) ends at the first newline.
        let body_start = after.find('\n').map(|i| i + 1).unwrap_or(after.len());
        let body = &after[body_start..];
        match body.find("```") {
            Some(close) => {
                out.push(&body[..close]);
                rest = &body[close + 3..];
            }
            None => {
                out.push(body);
                break;
            }
        }
    }
    out
}

/// Whether `code` defines a top-level function `name`.
pub fn defines(code: &str, name: &str) -> bool {
    !name.is_empty()
        && code.lines().any(|l| {
            let l = l.strip_prefix("async ").unwrap_or(l);
            l.strip_prefix("def ")
                .and_then(|r| r.strip_prefix(name))
                .is_some_and(|r| r.trim_start().starts_with('('))
        })
}

/// Tabs become four spaces, as the reference evaluation does.
pub fn tabs_to_spaces(code: &str) -> String {
    code.replace('\t', "    ")
}

/// The `import`/`from` lines of a prompt, in order.
pub fn import_lines(prompt: &str) -> Vec<&str> {
    prompt
        .lines()
        .filter(|l| l.starts_with("import ") || l.starts_with("from "))
        .collect()
}

/// The HumanEval program: the answer's code after the prompt's imports when it defines the
/// entry point itself, else the prompt followed by the answer (a function body).
pub fn humaneval_program(prompt: &str, code: &str, entry_point: &str) -> String {
    let code = tabs_to_spaces(code);
    if defines(&code, entry_point) {
        let imports = import_lines(prompt);
        if imports.is_empty() {
            code
        } else {
            format!("{}\n{}", imports.join("\n"), code)
        }
    } else {
        format!("{prompt}{code}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_fence_cuts_at_close() {
        assert_eq!(
            code_from_answer("def f():\n    return 1\n```\ntext", true, "f"),
            "def f():\n    return 1\n"
        );
        assert_eq!(code_from_answer("x = 1\n", true, "f"), "x = 1\n");
    }

    #[test]
    fn picks_block_defining_entry_point() {
        let a = "Plan:\n1. loop\n```python\nprint(1)\n```\nthen\n```python\ndef solve(x):\n    return x\n```\nbye";
        assert_eq!(
            code_from_answer(a, false, "solve"),
            "def solve(x):\n    return x\n"
        );
        // No block defines it: the longest.
        assert_eq!(
            code_from_answer("```\na = 1\n```\n```py\nbb = 22\n```", false, "zz"),
            "bb = 22\n"
        );
        // Unclosed fence runs to the end; no fence: the whole answer.
        assert_eq!(code_from_answer("```python\nx=1", false, "f"), "x=1");
        assert_eq!(code_from_answer("x = 2", false, "f"), "x = 2");
    }

    #[test]
    fn definition_detection() {
        assert!(defines("import a\ndef foo (x):\n", "foo"));
        assert!(defines("async def foo(x):\n", "foo"));
        assert!(!defines("def foobar(x):\n", "foo"));
        assert!(!defines("    def foo(x):\n", "foo"));
        assert!(!defines("x = foo(1)\n", "foo"));
    }

    #[test]
    fn humaneval_assembly() {
        let prompt = "from typing import List\nimport math\n\n\ndef f(x: List[int]) -> int:\n    \"\"\"doc\"\"\"\n";
        // Whole function: imports kept, prompt dropped, tabs expanded.
        assert_eq!(
            humaneval_program(prompt, "def f(x):\n\treturn 1\n", "f"),
            "from typing import List\nimport math\ndef f(x):\n    return 1\n"
        );
        // Body only: appended to the prompt.
        assert_eq!(
            humaneval_program(prompt, "    return 1\n", "f"),
            format!("{prompt}    return 1\n")
        );
    }
}
