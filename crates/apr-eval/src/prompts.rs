//! Prompt strategies, one registry table ([`STRATEGIES`]); docs/prompts.md shows the text of
//! each. A strategy turns a task into the first prompt (chat messages plus a pre-filled start
//! of the answer, or raw text) with its stop strings; multi-turn ones (reflexion) also say
//! what to send after a failed visible test.

use crate::datasets::{Benchmark, Task};

/// Qwen2.5-Coder's evaluation system message (its repository's instruct HumanEval prompt).
pub const QWEN_SYSTEM: &str =
    "You are an intelligent programming assistant to produce Python algorithmic solutions";
/// EvalPlus's instruction and response prefixes for chat models (evalplus/codegen.py).
pub const EVALPLUS_INSTRUCTION: &str = "Please provide a self-contained Python script that solves the following problem in a markdown code block:";
pub const EVALPLUS_RESPONSE: &str = "Below is a Python script with a self-contained function that solves the problem and passes corresponding tests:";
/// Tokens per answer for single-shot code (the reference's n_predict) and for answers that
/// reason first.
pub const MAX_TOKENS_CODE: usize = 768;
pub const MAX_TOKENS_REASONING: usize = 1536;
/// Stop strings for base-model completion of a HumanEval function body (Chen et al. 2021).
pub const BASE_STOPS_HUMANEVAL: [&str; 5] = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"];
/// Stop strings for base-model completion of an MBPP program.
pub const BASE_STOPS_MBPP: [&str; 5] =
    ["\nassert", "\n\"\"\"", "\nif __name__", "\nprint(", "\n```"];
/// Few-shot MBPP exemplars (Austin et al. 2021: tasks 2, 3 and 4 of the prompt split).
pub const FEW_SHOT_IDS: [u32; 3] = [2, 3, 4];
/// Spare exemplars from the prompt split, used when the task itself is one of the three.
pub const FEW_SHOT_SPARE: [u32; 3] = [5, 6, 7];

/// How the first prompt is fed.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `(role, content)` messages rendered with the model's chat template (with the
    /// generation prompt), followed by `prefill`, the answer's pre-filled start.
    Chat {
        messages: Vec<(String, String)>,
        prefill: String,
    },
    /// Text fed as it is (base models, few-shot).
    Raw(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub frame: Frame,
    pub stop: Vec<String>,
    /// The prompt ends inside an opened ```python fence: the answer is code up to its close.
    pub fence_open: bool,
    pub max_tokens: usize,
}

/// What a strategy sees.
pub struct Ctx<'a> {
    pub bench: Benchmark,
    pub task: &'a Task,
    /// MBPP few-shot exemplars (tasks of the prompt split), when the strategy needs them.
    pub exemplars: &'a [Task],
}

#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum PromptError {
    #[error("unknown prompt strategy `{0}` (known: {1})")]
    Unknown(String, String),
    #[error("prompt strategy `{0}` is defined for MBPP and MBPP+ only")]
    MbppOnly(&'static str),
    #[error("few-shot exemplars (MBPP tasks 2-7) are missing")]
    NoExemplars,
}

pub struct Strategy {
    pub name: &'static str,
    pub about: &'static str,
    pub prompt: fn(&Ctx) -> Result<Prompt, PromptError>,
    /// Multi-turn strategies: the user message that follows a failed run of the visible tests
    /// (argument: the failure). The next answer is read from fenced blocks.
    pub feedback: Option<fn(&str) -> String>,
    /// Rounds of feedback at most.
    pub max_rounds: usize,
}

pub static STRATEGIES: &[Strategy] = &[
    Strategy {
        name: "qwen-instruct",
        about: "Qwen2.5-Coder's instruct evaluation prompt, answer pre-filled with a ```python fence (default for chat models)",
        prompt: qwen_instruct,
        feedback: None,
        max_rounds: 0,
    },
    Strategy {
        name: "evalplus-instruct",
        about: "EvalPlus's chat prompt: \"Please provide a self-contained Python script...\", its response prefix pre-filled",
        prompt: evalplus_instruct,
        feedback: None,
        max_rounds: 0,
    },
    Strategy {
        name: "base-completion",
        about: "raw completion for base models: the function prompt (MBPP: a docstring with the task and one test), standard stop strings",
        prompt: base_completion,
        feedback: None,
        max_rounds: 0,
    },
    Strategy {
        name: "few-shot",
        about: "MBPP only: three solved exemplars (tasks 2-4) in the MBPP paper's [BEGIN]/[DONE] format, raw text",
        prompt: few_shot,
        feedback: None,
        max_rounds: 0,
    },
    Strategy {
        name: "scot",
        about: "structured chain of thought: a plan in sequence/branch/loop steps, then the code",
        prompt: scot,
        feedback: None,
        max_rounds: 0,
    },
    Strategy {
        name: "cgo",
        about: "chain of grounded objectives: the objectives the function must meet, then code grounded on them",
        prompt: cgo,
        feedback: None,
        max_rounds: 0,
    },
    Strategy {
        name: "reflexion",
        about: "qwen-instruct, then up to two rounds of: run the visible examples, show the failure, reflect, rewrite",
        prompt: qwen_instruct,
        feedback: Some(reflexion_feedback),
        max_rounds: 2,
    },
];

/// The strategy named `name`.
pub fn strategy(name: &str) -> Result<&'static Strategy, PromptError> {
    STRATEGIES.iter().find(|s| s.name == name).ok_or_else(|| {
        let known: Vec<&str> = STRATEGIES.iter().map(|s| s.name).collect();
        PromptError::Unknown(name.to_string(), known.join(", "))
    })
}

fn is_mbpp(b: Benchmark) -> bool {
    matches!(b, Benchmark::Mbpp | Benchmark::MbppPlus)
}

/// The task as the user states it in the chat strategies.
fn problem_statement(c: &Ctx) -> String {
    match c.bench {
        Benchmark::HumanEval | Benchmark::HumanEvalPlus => {
            format!("```python\n{}\n```", c.task.prompt.trim())
        }
        // MBPP+ records carry the task text and one example assertion in their own prompt.
        Benchmark::MbppPlus => c.task.prompt.trim().to_string(),
        Benchmark::Mbpp => format!(
            "{}\nYour code should pass these tests:\n```python\n{}\n```",
            c.task.prompt.trim(),
            c.task.tests.join("\n")
        ),
    }
}

fn chat(system: Option<&str>, user: String, prefill: &str) -> Frame {
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(("system".to_string(), s.to_string()));
    }
    messages.push(("user".to_string(), user));
    Frame::Chat {
        messages,
        prefill: prefill.to_string(),
    }
}

fn qwen_instruct(c: &Ctx) -> Result<Prompt, PromptError> {
    let user = match c.bench {
        Benchmark::HumanEval | Benchmark::HumanEvalPlus => format!(
            "Can you complete the following Python function?\n{}",
            problem_statement(c)
        ),
        _ => problem_statement(c),
    };
    Ok(Prompt {
        frame: chat(Some(QWEN_SYSTEM), user, "```python\n"),
        stop: vec!["```".to_string()],
        fence_open: true,
        max_tokens: MAX_TOKENS_CODE,
    })
}

fn evalplus_instruct(c: &Ctx) -> Result<Prompt, PromptError> {
    let task = match c.bench {
        Benchmark::Mbpp => format!("{}\n{}", c.task.prompt.trim(), c.task.tests.join("\n")),
        _ => c.task.prompt.trim().to_string(),
    };
    let user = format!("{EVALPLUS_INSTRUCTION}\n```\n{task}\n```\n");
    Ok(Prompt {
        frame: chat(None, user, &format!("{EVALPLUS_RESPONSE}\n```python\n")),
        stop: vec!["```".to_string()],
        fence_open: true,
        max_tokens: MAX_TOKENS_CODE,
    })
}

fn base_completion(c: &Ctx) -> Result<Prompt, PromptError> {
    let (text, stops): (String, &[&str]) = match c.bench {
        Benchmark::HumanEval | Benchmark::HumanEvalPlus => {
            (c.task.prompt.clone(), &BASE_STOPS_HUMANEVAL)
        }
        Benchmark::MbppPlus => (format!("{}\n", c.task.prompt.trim()), &BASE_STOPS_MBPP),
        Benchmark::Mbpp => (
            format!(
                "\"\"\"\n{}\n{}\n\"\"\"\n",
                c.task.prompt.trim(),
                c.task.tests.first().map(String::as_str).unwrap_or("")
            ),
            &BASE_STOPS_MBPP,
        ),
    };
    Ok(Prompt {
        frame: Frame::Raw(text),
        stop: stops.iter().map(|s| s.to_string()).collect(),
        fence_open: false,
        max_tokens: MAX_TOKENS_CODE,
    })
}

/// The task text and tests of an MBPP(+) task: MBPP+ keeps both in its docstring prompt.
fn mbpp_text_and_tests(c: &Ctx) -> (String, Vec<String>) {
    if c.bench == Benchmark::MbppPlus {
        let body = c.task.prompt.trim().trim_matches('"').trim();
        let (tests, text): (Vec<&str>, Vec<&str>) = body
            .lines()
            .partition(|l| l.trim_start().starts_with("assert"));
        (
            text.join("\n").trim().to_string(),
            tests.iter().map(|s| s.trim().to_string()).collect(),
        )
    } else {
        (c.task.prompt.trim().to_string(), c.task.tests.clone())
    }
}

fn few_shot_block(text: &str, tests: &[String]) -> String {
    format!(
        "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n{}\n",
        tests.join("\n")
    )
}

fn few_shot(c: &Ctx) -> Result<Prompt, PromptError> {
    if !is_mbpp(c.bench) {
        return Err(PromptError::MbppOnly("few-shot"));
    }
    let num = |t: &Task| {
        t.task_id
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
    };
    let own = num(c.task);
    let mut picked = Vec::new();
    for id in FEW_SHOT_IDS.iter().chain(&FEW_SHOT_SPARE) {
        if picked.len() == FEW_SHOT_IDS.len() {
            break;
        }
        // Never show the task its own solution.
        if Some(*id) == own {
            continue;
        }
        let ex = c
            .exemplars
            .iter()
            .find(|t| num(t) == Some(*id))
            .ok_or(PromptError::NoExemplars)?;
        picked.push(ex);
    }
    let mut text = String::new();
    for ex in picked {
        text += &few_shot_block(ex.prompt.trim(), &ex.tests);
        text += &format!(
            "[BEGIN]\n{}\n[DONE]\n",
            ex.canonical_solution.replace("\r\n", "\n").trim_end()
        );
    }
    let (task_text, tests) = mbpp_text_and_tests(c);
    text += &few_shot_block(&task_text, &tests);
    text += "[BEGIN]\n";
    Ok(Prompt {
        frame: Frame::Raw(text),
        stop: vec!["[DONE]".to_string()],
        fence_open: false,
        max_tokens: MAX_TOKENS_CODE,
    })
}

fn reasoning(c: &Ctx, instruction: &str) -> Prompt {
    let user = format!("{}\n\n{instruction}", problem_statement(c));
    Prompt {
        frame: chat(Some(QWEN_SYSTEM), user, ""),
        stop: Vec::new(),
        fence_open: false,
        max_tokens: MAX_TOKENS_REASONING,
    }
}

fn scot(c: &Ctx) -> Result<Prompt, PromptError> {
    Ok(reasoning(
        c,
        "First write a structured plan of the solution using only the three basic program \
         structures: sequence, branch and loop (numbered steps, such as \"1. for each item in \
         the list:\" and \"2. if the item is negative:\"). Then write the complete Python code \
         that follows the plan in one ```python block.",
    ))
}

fn cgo(c: &Ctx) -> Result<Prompt, PromptError> {
    Ok(reasoning(
        c,
        "First list the objectives the function must meet: what it takes, what it returns, \
         and every condition and edge case the description implies (a numbered list, one \
         objective per line). Then write the complete Python code, grounded on those \
         objectives, in one ```python block.",
    ))
}

fn reflexion_feedback(failure: &str) -> String {
    format!(
        "The code above fails the examples given in the task:\n```\n{}\n```\nReflect in two or \
         three sentences on why it fails, then write the corrected complete Python code in one \
         ```python block.",
        failure.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, prompt: &str, tests: &[&str]) -> Task {
        Task {
            task_id: id.to_string(),
            prompt: prompt.to_string(),
            entry_point: "f".to_string(),
            canonical_solution: format!("def f():\n    return '{id}'\n"),
            tests: tests.iter().map(|s| s.to_string()).collect(),
            test_code: String::new(),
            raw: String::new(),
        }
    }

    #[test]
    fn qwen_instruct_humaneval_is_the_reference_text() {
        let t = task("HumanEval/0", "def f():\n    \"\"\"doc\"\"\"\n", &[]);
        let c = Ctx {
            bench: Benchmark::HumanEval,
            task: &t,
            exemplars: &[],
        };
        let p = (strategy("qwen-instruct").unwrap().prompt)(&c).unwrap();
        let Frame::Chat { messages, prefill } = p.frame else {
            panic!("chat")
        };
        assert_eq!(messages[0].1, QWEN_SYSTEM);
        assert_eq!(
            messages[1].1,
            "Can you complete the following Python function?\n```python\ndef f():\n    \"\"\"doc\"\"\"\n```"
        );
        assert_eq!(prefill, "```python\n");
        assert!(p.fence_open);
        assert_eq!(p.stop, vec!["```"]);
    }

    #[test]
    fn mbpp_frames() {
        let t = task(
            "Mbpp/11",
            "Remove chars.",
            &["assert f(1) == 2", "assert f(2) == 3"],
        );
        let c = Ctx {
            bench: Benchmark::Mbpp,
            task: &t,
            exemplars: &[],
        };
        let p = qwen_instruct(&c).unwrap();
        let Frame::Chat { messages, .. } = p.frame else {
            panic!("chat")
        };
        assert_eq!(
            messages[1].1,
            "Remove chars.\nYour code should pass these tests:\n```python\nassert f(1) == 2\nassert f(2) == 3\n```"
        );
        let plus = task(
            "Mbpp/2",
            "\"\"\"\nFind shared.\nassert f(1) == 2\n\"\"\"",
            &[],
        );
        let c = Ctx {
            bench: Benchmark::MbppPlus,
            task: &plus,
            exemplars: &[],
        };
        assert_eq!(
            mbpp_text_and_tests(&c),
            (
                "Find shared.".to_string(),
                vec!["assert f(1) == 2".to_string()]
            )
        );
    }

    #[test]
    fn few_shot_skips_the_task_itself() {
        let ex: Vec<Task> = (2..=7)
            .map(|i| {
                task(
                    &format!("Mbpp/{i}"),
                    &format!("task {i}."),
                    &["assert f() == 1"],
                )
            })
            .collect();
        let own = task("Mbpp/3", "task 3.", &["assert f() == 1"]);
        let c = Ctx {
            bench: Benchmark::Mbpp,
            task: &own,
            exemplars: &ex,
        };
        let p = few_shot(&c).unwrap();
        let Frame::Raw(text) = p.frame else {
            panic!("raw")
        };
        assert!(
            text.contains("'Mbpp/2'") && text.contains("'Mbpp/4'") && text.contains("'Mbpp/5'")
        );
        assert!(!text.contains("'Mbpp/3'"));
        assert!(text.ends_with("[BEGIN]\n"));
        let he = task("HumanEval/1", "def f():\n", &[]);
        let c = Ctx {
            bench: Benchmark::HumanEval,
            task: &he,
            exemplars: &ex,
        };
        assert_eq!(few_shot(&c), Err(PromptError::MbppOnly("few-shot")));
    }

    #[test]
    fn registry_names_unique_and_unknown_is_error() {
        let mut names: Vec<&str> = STRATEGIES.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STRATEGIES.len());
        assert!(matches!(strategy("nope"), Err(PromptError::Unknown(..))));
    }
}
