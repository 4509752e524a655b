/// A read/write register with compare-and-swap: the textbook object of Herlihy & Wing (1990, §2).
public struct RegisterModel<Value: Hashable & Sendable>: SequentialModel {
    public enum Input: Sendable, Hashable {
        case read
        case write(Value)
        /// Sets `new` if the register holds `expected`.
        case compareAndSwap(expected: Value, new: Value)
    }

    public enum Output: Sendable, Hashable {
        case value(Value)
        case ok
        case swapped(Bool)
    }

    public let initialState: Value

    /// - Parameter initialValue: the register's value before any operation.
    public init(initialValue: Value) {
        initialState = initialValue
    }

    public func step(_ state: Value, _ input: Input) -> (output: Output, next: Value) {
        switch input {
        case .read:
            return (.value(state), state)
        case .write(let value):
            return (.ok, value)
        case .compareAndSwap(let expected, let new):
            return state == expected ? (.swapped(true), new) : (.swapped(false), state)
        }
    }

    public func isReadOnly(_ input: Input) -> Bool {
        if case .read = input { return true }
        return false
    }
}
