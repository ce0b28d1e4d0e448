//! KubeEdge DeviceTwin MQTT topics and JSON payloads (filled by the foundation issue).
