internal import CRingCast
import ArgumentParser

/// A bug planted into every core to prove that the checkers can fail (rc_lcr_settings.test_fault).
public enum PlantedBug: String, Sendable, Codable, CaseIterable, ExpressibleByArgument {
    case none
    /// tryDeliver ignores `stable`: delivers the first of pending at once (Fig. 2.5 line 25 broken).
    case deliverUnstable = "deliver-unstable"

    var testFault: UInt32 {
        switch self {
        case .none: return UInt32(RC_LCR_FAULT_NONE)
        case .deliverUnstable: return UInt32(RC_LCR_FAULT_DELIVER_UNSTABLE)
        }
    }
}
