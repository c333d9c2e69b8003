//! SDXL's two CLIP tokenizers, built on the `tokenizers` crate so that ids equal those of
//! transformers' `CLIPTokenizer` (which diffusers calls with `padding="max_length"`,
//! `max_length=77`, `truncation=True`).
//!
//! transformers 5 builds `CLIPTokenizer` from vocab.json + merges.txt as a `tokenizers` pipeline
//! (the pure-Python tokenizer, and with it ftfy, is gone): NFC → `\s+` to one space → lowercase,
//! split on CLIP's regex, byte-level (which re-splits with GPT-2's regex), BPE with a `</w>`
//! end-of-word suffix. We build the same pipeline, with fancy-regex instead of oniguruma so that
//! it also runs on wasm32.
//!
//! The special tokens (bos, eos, unk, pad) are also "added tokens": they are cut out of the
//! prompt before BPE, so with tokenizer_2 (pad `!`) every `!` in a prompt becomes id 0, exactly
//! as in transformers. Whether one is matched before or after normalization (`normalized`)
//! follows transformers' loading rules, see [`special_tokens`].

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use serde_json::{Map, Value};
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as Normalizers};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizers;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// CLIP's word pattern, as in transformers' `CLIPTokenizer`.
const CLIP_PATTERN: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The files a tokenizer folder may hold.
pub const FOLDER_FILES: [&str; 5] =
    ["tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"];

/// CLIP's text encoders have 77 positions; used when tokenizer_config.json gives no length.
const DEFAULT_MAX_LEN: usize = 77;
/// The largest model_max_length accepted: it sizes every window of ids, and a config can say
/// anything (transformers writes 1e30 for "no limit"); CLIP's encoders have 77 positions.
pub const MAX_MAX_LEN: usize = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: malformed JSON: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

fn invalid(file: &str, message: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid { file: file.to_string(), message: message.into() }
}

/// A prompt's ids in the model's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// `max_len` ids: BOS, the prompt's tokens (cut to fit), EOS, then padding.
    pub ids: Vec<i64>,
    /// Tokens including BOS and EOS before truncation; above `max_len` the prompt was cut.
    pub untruncated_len: usize,
}

pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_len: usize,
}

impl ClipTokenizer {
    /// From a diffusers `tokenizer/` folder: tokenizer.json if present, else vocab.json +
    /// merges.txt; tokenizer_config.json and special_tokens_map.json (both optional) give the
    /// special tokens and model_max_length.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let mut files = std::collections::BTreeMap::new();
        for name in FOLDER_FILES {
            let path = dir.join(name);
            if path.exists() {
                let bytes = std::fs::read(&path)
                    .map_err(|source| TokenizerError::Io { file: path.display().to_string(), source })?;
                files.insert(name, bytes);
            }
        }
        Self::from_folder_files(&dir.display().to_string(), |name| files.get(name).map(Vec::as_slice))
    }

    /// From the files of a tokenizer folder (`file(name)` is `None` for an absent one), as
    /// [`Self::from_dir`] reads them; the browser has them as bytes. `folder` names it in errors.
    pub fn from_folder_files<'a>(
        folder: &str,
        file: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<Self, TokenizerError> {
        let (config, special_map) = (file("tokenizer_config.json"), file("special_tokens_map.json"));
        if let Some(tokenizer_json) = file("tokenizer.json") {
            return Self::from_tokenizer_json(tokenizer_json, config, special_map);
        }
        let required = |name: &str| file(name).ok_or_else(|| invalid(&format!("{folder}/{name}"), "missing"));
        Self::from_files(required("vocab.json")?, required("merges.txt")?, config, special_map)
    }

    /// From the contents of vocab.json, merges.txt and the optional configs (in the browser the
    /// files arrive as bytes).
    pub fn from_files(
        vocab_json: &[u8],
        merges_txt: &[u8],
        tokenizer_config_json: Option<&[u8]>,
        special_tokens_map_json: Option<&[u8]>,
    ) -> Result<Self, TokenizerError> {
        let vocab: Vocab =
            serde_json::from_slice(vocab_json).map_err(|source| TokenizerError::Json { file: "vocab.json".into(), source })?;
        let merges = parse_merges(merges_txt)?;
        let config = parse_object("tokenizer_config.json", tokenizer_config_json)?;
        let special_map = parse_object("special_tokens_map.json", special_tokens_map_json)?;
        Self::build(vocab, merges, "merges.txt", Vec::new(), &config, &special_map)
    }

    /// From the contents of a tokenizer.json: its BPE vocabulary, merges and added tokens; the
    /// pipeline is rebuilt as transformers' `CLIPTokenizer` does.
    pub fn from_tokenizer_json(
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&[u8]>,
        special_tokens_map_json: Option<&[u8]>,
    ) -> Result<Self, TokenizerError> {
        const FILE: &str = "tokenizer.json";
        let json: Value = serde_json::from_slice(tokenizer_json).map_err(|source| TokenizerError::Json { file: FILE.into(), source })?;
        #[allow(clippy::indexing_slicing)] // indexing a JSON value by key gives Null when absent, never panics
        let model = &json["model"];
        if model["type"] != "BPE" {
            return Err(invalid(FILE, format!("model type {} is not BPE", model["type"])));
        }
        let vocab = serde_json::from_value(model["vocab"].clone()).map_err(|source| TokenizerError::Json { file: FILE.into(), source })?;
        let merges = match &model["merges"] {
            Value::Array(merges) => merges
                .iter()
                .map(|merge| match merge {
                    // Older files write "a b", newer ones ["a", "b"].
                    Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())),
                    Value::Array(pair) => match pair.as_slice() {
                        [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                        _ => None,
                    },
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(FILE, "model.merges: each merge must be \"a b\" or [\"a\", \"b\"]"))?,
            _ => return Err(invalid(FILE, "model.merges is missing")),
        };
        #[allow(clippy::indexing_slicing)] // indexing a JSON value by key gives Null when absent, never panics
        let added = match &json["added_tokens"] {
            Value::Array(tokens) => tokens.iter().map(|t| added_token(FILE, t, false)).collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let config = parse_object("tokenizer_config.json", tokenizer_config_json)?;
        let special_map = parse_object("special_tokens_map.json", special_tokens_map_json)?;
        Self::build(vocab, merges, FILE, added, &config, &special_map)
    }

    fn build(
        vocab: Vocab,
        merges: Vec<(String, String)>,
        merges_file: &str,
        tokenizer_json_added: Vec<AddedToken>,
        config: &Map<String, Value>,
        special_map: &Map<String, Value>,
    ) -> Result<Self, TokenizerError> {
        let specials = special_tokens(config, special_map, tokenizer_json_added)?;
        for (token, file) in specials.added.iter().chain(&specials.named) {
            if !vocab.contains_key(&token.content) {
                return Err(invalid(file, format!("token {:?} is not in the vocabulary", token.content)));
            }
        }
        let max_len = match config.get("model_max_length") {
            None => DEFAULT_MAX_LEN,
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) if (2..=MAX_MAX_LEN).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        "tokenizer_config.json",
                        format!("model_max_length {v} is not an integer from 2 to {MAX_MAX_LEN} (CLIP uses 77)"),
                    ));
                }
            },
        };
        let [bos, eos, unk, pad] = specials.named.clone().map(|(token, _)| token.content);
        #[allow(clippy::indexing_slicing)] // every named token was checked to be in the vocabulary above
        let id = |content: &str| vocab[content];
        let (bos, eos, pad) = (id(&bos), id(&eos), id(&pad));

        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .unk_token(unk)
            .fuse_unk(false)
            .build()
            .map_err(|e| invalid(merges_file, format!("does not fit the vocabulary: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        // Only the constant regexes can fail here: a bug of ours or of the crate, not of the files.
        let pipeline_error = |e| invalid("CLIP pipeline", format!("{e}"));
        let normalizer = Normalizers::new(vec![
            NFC.into(),
            Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(pipeline_error)?.into(),
            Lowercase.into(),
        ]);
        let split = Split::new(SplitPattern::Regex(CLIP_PATTERN.into()), SplitDelimiterBehavior::Removed, true).map_err(pipeline_error)?;
        tokenizer
            .with_normalizer(Some(normalizer))
            .map_err(pipeline_error)?
            .with_pre_tokenizer(Some(PreTokenizers::new(vec![split.into(), ByteLevel::new(false, true, true).into()])));
        // In transformers' order: for a repeated content the last one's flags count.
        let added = specials.added.into_iter().chain(specials.named).map(|(token, _)| token);
        tokenizer.add_special_tokens(added).map_err(pipeline_error)?;
        Ok(Self { tokenizer, bos, eos, pad, max_len })
    }

    /// The prompt's ids in the `max_len` window, as diffusers gets them: BOS, tokens cut to
    /// `max_len - 2`, EOS, padding.
    pub fn encode(&self, prompt: &str) -> Result<Encoded, TokenizerError> {
        let tokens = self.encode_raw(prompt)?;
        let kept = tokens.len().min(self.max_len - 2);
        Ok(Encoded { ids: self.window(tokens.get(..kept).unwrap_or_default()), untruncated_len: tokens.len() + 2 })
    }

    /// One `max_len` window: BOS, `tokens` (at most `max_len - 2`), EOS, padding.
    pub fn window(&self, tokens: &[u32]) -> Vec<i64> {
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.bos as i64);
        ids.extend(tokens.iter().map(|&id| id as i64));
        ids.push(self.eos as i64);
        ids.resize(self.max_len, self.pad as i64);
        ids
    }

    /// The prompt's ids without BOS/EOS and without a window (for chunking long prompts).
    /// Errors only if the `tokenizers` pipeline itself fails.
    pub fn encode_raw(&self, prompt: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self.tokenizer.encode(prompt, false).map_err(|e| invalid("prompt", format!("tokenization failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn bos_id(&self) -> u32 {
        self.bos
    }
    pub fn eos_id(&self) -> u32 {
        self.eos
    }
    pub fn pad_id(&self) -> u32 {
        self.pad
    }
    /// The window length (tokenizer_config.json's model_max_length, 77 for SDXL).
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// merges.txt: an optional `#version` line, then one `left right` pair per line.
fn parse_merges(merges_txt: &[u8]) -> Result<Vec<(String, String)>, TokenizerError> {
    const FILE: &str = "merges.txt";
    let text = std::str::from_utf8(merges_txt).map_err(|e| invalid(FILE, format!("not UTF-8: {e}")))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.starts_with("#version"))
        .map(|(i, line)| match line.split(' ').collect::<Vec<_>>()[..] {
            [a, b] => Ok((a.to_string(), b.to_string())),
            _ => Err(invalid(FILE, format!("line {}: expected two space-separated symbols, found {line:?}", i + 1))),
        })
        .collect()
}

fn parse_object(file: &str, bytes: Option<&[u8]>) -> Result<Map<String, Value>, TokenizerError> {
    let Some(bytes) = bytes else { return Ok(Map::new()) };
    match serde_json::from_slice(bytes).map_err(|source| TokenizerError::Json { file: file.into(), source })? {
        Value::Object(map) => Ok(map),
        _ => Err(invalid(file, "expected a JSON object")),
    }
}

/// A token as the configs write it: a string, or an object with `content` and flags. As in
/// transformers, a string is a special token matched on the raw prompt (normalized = false); an
/// object without `normalized` is normalized unless it is special (`special_default` stands in
/// for a missing `special`: special_tokens_map.json's tokens are special, the config's are not).
fn added_token(file: &str, value: &Value, special_default: bool) -> Result<AddedToken, TokenizerError> {
    match value {
        Value::String(content) => Ok(AddedToken::from(content.clone(), true)),
        Value::Object(obj) => {
            let content = obj
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(file, format!("token {value} has no content")))?;
            let flag = |key: &str| obj.get(key).and_then(Value::as_bool);
            let special = flag("special").unwrap_or(special_default);
            Ok(AddedToken::from(content.to_string(), special)
                .normalized(flag("normalized").unwrap_or(!special))
                .lstrip(flag("lstrip").unwrap_or(false))
                .rstrip(flag("rstrip").unwrap_or(false))
                .single_word(flag("single_word").unwrap_or(false)))
        }
        _ => Err(invalid(file, format!("token {value} is neither a string nor an object"))),
    }
}

/// The added tokens in the order transformers adds them, each with the file it came from.
struct SpecialTokens {
    /// added_tokens_decoder (tokenizer_config.json) or added_tokens (tokenizer.json), by id.
    added: Vec<(AddedToken, &'static str)>,
    /// bos, eos, unk, pad: added after `added`, so for a repeated content their flags win.
    named: [(AddedToken, &'static str); 4],
}

/// The special tokens as transformers 5 resolves them (`PreTrainedTokenizerBase.from_pretrained`):
/// tokenizer_config.json's bos/eos/unk/pad (defaults: CLIPTokenizer's); if the config has an
/// `added_tokens_decoder` it defines the added tokens, else special_tokens_map.json overrides the
/// named tokens and tokenizer.json's added tokens are used; a named token then takes the flags of
/// the added token with the same content.
fn special_tokens(
    config: &Map<String, Value>,
    special_map: &Map<String, Value>,
    tokenizer_json_added: Vec<AddedToken>,
) -> Result<SpecialTokens, TokenizerError> {
    const CONFIG: &str = "tokenizer_config.json";
    const MAP: &str = "special_tokens_map.json";
    let (added, special_map) = match config.get("added_tokens_decoder") {
        Some(Value::Object(decoder)) => {
            let mut by_id = decoder
                .iter()
                .map(|(id, token)| {
                    let id: u32 = id
                        .parse()
                        .map_err(|_| invalid(CONFIG, format!("added_tokens_decoder key {id:?} is not an id")))?;
                    Ok((id, (added_token(CONFIG, token, false)?, CONFIG)))
                })
                .collect::<Result<Vec<_>, TokenizerError>>()?;
            by_id.sort_by_key(|(id, _)| *id);
            (by_id.into_iter().map(|(_, t)| t).collect(), None)
        }
        Some(other) => return Err(invalid(CONFIG, format!("added_tokens_decoder {other} is not an object"))),
        None => (tokenizer_json_added.into_iter().map(|t| (t, "tokenizer.json")).collect::<Vec<_>>(), Some(special_map)),
    };
    let named = |key: &str, default: &str| -> Result<(AddedToken, &'static str), TokenizerError> {
        let given = |map: &Map<String, Value>| map.get(key).filter(|v| !v.is_null()).cloned();
        let (token, file) = match (special_map.and_then(given), given(config)) {
            (Some(v), _) => (added_token(MAP, &v, true)?, MAP),
            (None, Some(v)) => (added_token(CONFIG, &v, false)?, CONFIG),
            (None, None) => (AddedToken::from(default, true), CONFIG),
        };
        Ok(match added.iter().find(|(t, _)| t.content == token.content) {
            Some(same) => same.clone(),
            None => (token, file),
        })
    };
    let named = [
        named("bos_token", "<|startoftext|>")?,
        named("eos_token", "<|endoftext|>")?,
        named("unk_token", "<|endoftext|>")?,
        named("pad_token", "<|endoftext|>")?,
    ];
    Ok(SpecialTokens { added, named })
}
