//! Hive-style partition directories of a source: `dir/year=2024/country=FR/part-0.parquet`.
//! The `k=v` directories between the source's root and each file become columns, appended
//! after the files' own: `int64` when every value is an integer, else `utf8`;
//! `__HIVE_DEFAULT_PARTITION__` (Hive's and Spark's name for a null) is a null. Values are
//! percent-decoded, as Hive writers escape them.

use arrow::datatypes::{DataType, Field};

use super::Unreadable;

/// The value Hive writes for a null partition value.
pub const NULL_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";

/// Partition columns and each file's values, in file order.
pub struct Partitions {
    pub fields: Vec<Field>,
    pub values: Vec<Vec<Option<String>>>,
}

/// The partitions of `files`, given as their directory segments below the source's root.
/// `None` when no file lies in a `k=v` directory; an error when the files disagree on the
/// partition columns (a table whose layout is not one Hive layout).
pub fn detect(dirs: &[Vec<String>]) -> Result<Option<Partitions>, Unreadable> {
    let mut keys: Option<Vec<String>> = None;
    let mut values = Vec::with_capacity(dirs.len());
    for segments in dirs {
        let mut file_keys = Vec::new();
        let mut file_values = Vec::new();
        for segment in segments {
            if let Some((k, v)) = segment.split_once('=')
                && !k.is_empty()
            {
                file_keys.push(percent_decode(k));
                let v = percent_decode(v);
                file_values.push((v != NULL_VALUE).then_some(v));
            }
        }
        match &keys {
            None => keys = Some(file_keys),
            Some(first) if *first != file_keys => {
                return Err(Unreadable(format!(
                    "its files lie in different partition directories ({} and {}): a \
                     Hive-partitioned source has the same k=v directories above every file",
                    describe(first),
                    describe(&file_keys)
                )));
            }
            Some(_) => {}
        }
        values.push(file_values);
    }
    let Some(keys) = keys.filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    let fields = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut present = values.iter().filter_map(|v| v[i].as_deref()).peekable();
            let integers =
                present.peek().is_some() && present.all(|v| v.trim().parse::<i64>().is_ok());
            let data_type = if integers {
                DataType::Int64
            } else {
                DataType::Utf8
            };
            Field::new(key, data_type, true)
        })
        .collect();
    Ok(Some(Partitions { fields, values }))
}

fn describe(keys: &[String]) -> String {
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join("/")
    }
}

/// `%XX` escapes decoded; anything malformed is kept as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter()
            .map(|d| d.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn typed_columns_and_nulls() {
        let p = detect(&dirs(&[
            &["year=2024", "country=FR"],
            &["year=2025", "country=__HIVE_DEFAULT_PARTITION__"],
            &["year=2025", "country=S%C3%A3o%20Tom%C3%A9"],
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(p.fields[0].data_type(), &DataType::Int64);
        assert_eq!(p.fields[1].data_type(), &DataType::Utf8);
        assert_eq!(p.values[1][1], None);
        assert_eq!(p.values[2][1].as_deref(), Some("São Tomé"));
    }

    #[test]
    fn none_or_disagreeing() {
        assert!(detect(&dirs(&[&["a"], &[]])).unwrap().is_none());
        assert!(detect(&dirs(&[&["k=1"], &["j=1"]])).is_err());
        let all_null = detect(&dirs(&[&["k=__HIVE_DEFAULT_PARTITION__"]]))
            .unwrap()
            .unwrap();
        assert_eq!(all_null.fields[0].data_type(), &DataType::Utf8);
    }
}
