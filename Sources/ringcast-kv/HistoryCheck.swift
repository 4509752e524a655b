import RingCastLinCheck

/// The bench's history as the checker's events (the API agreed in kv-history-api.md).
func kvEvents(_ operations: [RecordedOperation]) -> [KVEvent] {
    operations.map { operation in
        let input: KVInput = switch operation.input {
        case let .put(key, value): .put(key: key, value: value)
        case let .get(key): .get(key: key)
        case let .incr(key, delta): .incr(key: key, delta: delta)
        }
        let output: KVOutput? = operation.output.map { result in
            switch result {
            case .ok: .ok
            case let .value(value): .value(value)
            case let .deleted(existed): .deleted(existed: existed)
            case let .swapped(swapped): .swapped(swapped)
            case let .counter(value): .counter(value)
            case .notACounter: .notACounter
            }
        }
        return KVEvent(client: operation.client, input: input, output: output, invokeNanos: operation.invokeNanos,
                       returnNanos: operation.returnNanos)
    }
}

/// Checks the recorded history with `checkKV` (Wing–Gong/Lowe search per key).
func checkHistory(_ operations: [RecordedOperation]) -> CheckOutcome {
    let report = checkKV(kvEvents(operations))
    return CheckOutcome(linearizable: report.isLinearizable, decided: report.decided, operations: report.operations,
                        keysChecked: report.keysChecked, explanation: report.explanation)
}
