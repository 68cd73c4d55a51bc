//! `apr chat MODEL`: an interactive multi-turn REPL; the cache keeps the conversation so each
//! turn only processes its new tokens.

use std::io::{BufRead, Write};

use anyhow::Result;
use apr_formats::chat_template::Message;

use crate::common::{ModelArgs, SamplingArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// System message
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(a: Args) -> Result<()> {
    a.sampling.validate()?;
    let engine = a.model.load()?;
    let mut session = engine.session(a.sampling.ctx);
    let opts = a.sampling.gen_options();
    let mut msgs = Vec::new();
    if let Some(s) = &a.system {
        msgs.push(Message::new("system", s));
    }
    eprintln!("type a message; /reset clears the conversation, /exit or Ctrl-D quits");
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                msgs.truncate(a.system.is_some() as usize);
                continue;
            }
            _ => {}
        }
        msgs.push(Message::new("user", line));
        let prompt = engine.chat_prompt(&msgs)?;
        let ids = engine.tokenizer.encode(&prompt)?;
        let out = match session.generate(&ids, &opts, &mut |piece| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }) {
            Ok(o) => o,
            Err(e) => {
                // A full context ends this conversation, not the program.
                eprintln!("\nerror: {e}; conversation reset");
                msgs.truncate(a.system.is_some() as usize);
                continue;
            }
        };
        println!();
        msgs.push(Message::new("assistant", &out.text));
    }
    Ok(())
}
