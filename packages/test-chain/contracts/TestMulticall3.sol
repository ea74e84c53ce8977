// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title TestMulticall3
/// @notice The part of the Multicall3 interface that x402 facilitators and viem use
///         (`tryAggregate`, `aggregate3`), for local chains that start without Multicall3.
///         Placed at the canonical Multicall3 address with `anvil_setCode`.
contract TestMulticall3 {
    struct Call {
        address target;
        bytes callData;
    }

    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Runs every call; reverts on a failed call only when `requireSuccess` is set.
    function tryAggregate(bool requireSuccess, Call[] calldata calls) external payable returns (Result[] memory returnData) {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool success, bytes memory data) = calls[i].target.call(calls[i].callData);
            require(success || !requireSuccess, "TestMulticall3: call failed");
            returnData[i] = Result(success, data);
        }
    }

    /// @notice Runs every call; reverts on a failed call unless that call allows failure.
    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData) {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool success, bytes memory data) = calls[i].target.call(calls[i].callData);
            require(success || calls[i].allowFailure, "TestMulticall3: call failed");
            returnData[i] = Result(success, data);
        }
    }
}
