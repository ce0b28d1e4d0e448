//! BLE mapper: not implemented yet; no issue schedules it. The crate exists so the layout is stable.
