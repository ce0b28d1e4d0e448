//! Values written as text by users: `map` keys and labels, and CSV samples in a preview.

use crate::value::Value;

/// The value a text stands for: an int, a float or a boolean (`true`/`false`) when it reads as
/// one, else the string itself.
pub(crate) fn infer(text: &str) -> Value {
    let trimmed = text.trim();
    if let Ok(i) = trimmed.parse::<i64>() {
        return Value::Int(i);
    }
    if let Some(x) = trimmed.parse::<f64>().ok().filter(|x| x.is_finite()) {
        return Value::Float(x);
    }
    match trimmed {
        "true" => Value::Boolean(true),
        "false" => Value::Boolean(false),
        _ => Value::String(text.to_owned()),
    }
}

/// Like [`infer`], but typed only when the value's wire form is exactly `text`, so the text is
/// reported unchanged (`"1.50"` and `"007"` stay strings).
pub(crate) fn infer_exact(text: &str) -> Value {
    let typed = infer(text);
    if typed.to_wire() == text {
        typed
    } else {
        Value::String(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_ints_floats_booleans_and_strings() {
        assert_eq!(infer("42"), Value::Int(42));
        assert_eq!(infer(" -7 "), Value::Int(-7));
        assert_eq!(infer("0.5"), Value::Float(0.5));
        assert_eq!(infer("1e3"), Value::Float(1000.0));
        assert_eq!(infer("true"), Value::Boolean(true));
        assert_eq!(infer("ON"), Value::String("ON".into()));
        assert_eq!(infer("NaN"), Value::String("NaN".into()));
    }

    #[test]
    fn exact_inference_keeps_the_text() {
        assert_eq!(infer_exact("1"), Value::Int(1));
        assert_eq!(infer_exact("1.5"), Value::Float(1.5));
        assert_eq!(infer_exact("1.50"), Value::String("1.50".into()));
        assert_eq!(infer_exact("007"), Value::String("007".into()));
        assert_eq!(infer_exact(" 1"), Value::String(" 1".into()));
    }
}
