//! edgetwin mapper SDK (filled by the SDK issue).
