//! Docker's list filters, as `--filter KEY=VALUE` and the API's `filters`
//! give them: each key's values are alternatives, and every key must
//! match. What a key means is the list's own ([`crate::container::docker`]
//! for containers, [`crate::events`], [`crate::image`]); this is the part
//! they share: the keys a list knows, the values given, and labels.

use std::collections::BTreeMap;
use std::marker::PhantomData;

/// The filter keys of one kind of list.
pub trait Keys {
    /// The keys known; another is an error naming these.
    const KEYS: &'static [&'static str];

    /// Checks a value of `key` (all are good unless the list says not).
    fn check(_key: &str, _value: &str) -> Result<(), String> {
        Ok(())
    }
}

/// The filters given for a list whose keys `K` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters<K> {
    values: BTreeMap<String, Vec<String>>,
    keys: PhantomData<K>,
}

impl<K> Default for Filters<K> {
    fn default() -> Self {
        Filters {
            values: BTreeMap::new(),
            keys: PhantomData,
        }
    }
}

impl<K: Keys> Filters<K> {
    /// Adds a value of `key`; an unknown key or a bad value is an error
    /// naming it.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), String> {
        if !K::KEYS.contains(&key) {
            return Err(format!(
                "invalid filter {key:?}: use {}",
                K::KEYS.join(", ")
            ));
        }
        K::check(key, value)?;
        self.insert_any(key, value);
        Ok(())
    }

    /// Adds `KEY=VALUE`, as `--filter` takes it.
    pub fn add(&mut self, filter: &str) -> Result<(), String> {
        let (k, v) = filter
            .split_once('=')
            .ok_or_else(|| format!("invalid filter {filter:?}: expected KEY=VALUE"))?;
        self.insert(k, v)
    }

    /// Adds a value of `key` unchecked: a key the list does not know is
    /// then left to its matcher.
    pub fn insert_any(&mut self, key: &str, value: &str) {
        self.values
            .entry(key.to_owned())
            .or_default()
            .push(value.to_owned());
    }

    /// The values given for `key`.
    pub fn values(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether every key given has a value `test(key, value)` accepts.
    pub fn all(&self, mut test: impl FnMut(&str, &str) -> bool) -> bool {
        self.values
            .iter()
            .all(|(key, wanted)| wanted.iter().any(|w| test(key, w)))
    }
}

/// Whether `labels` match a `label` filter's value: `key` (present) or
/// `key=value`.
pub fn label_matches(labels: &BTreeMap<String, String>, wanted: &str) -> bool {
    match wanted.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(wanted),
    }
}
