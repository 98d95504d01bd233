// Stands in for @matrix-org/matrix-sdk-crypto-nodejs (see package.json): every export exists, so that the bot SDK
// loads, and throws when used.
"use strict";
const names = ["Attachment", "EncryptedAttachment", "BackupDecryptionKey", "MegolmV1BackupKey", "RoomKeyCounts",
    "BackupKeys", "EncryptionAlgorithm", "EncryptionSettings", "ShieldColor", "ShieldStateCode", "ShieldState",
    "HistoryVisibility", "UserId", "DeviceId", "DeviceKeyId", "DeviceKeyAlgorithm", "DeviceKeyAlgorithmName", "RoomId",
    "ServerName", "StoreType", "OlmMachine", "CrossSigningStatus", "KeysUploadRequest", "KeysQueryRequest",
    "KeysClaimRequest", "ToDeviceRequest", "SignatureUploadRequest", "RoomMessageRequest", "KeysBackupRequest",
    "RequestType", "DecryptedRoomEvent", "DeviceLists", "Signatures", "Signature", "MaybeSignature",
    "SignatureVerification", "SignatureState", "Ed25519PublicKey", "Ed25519Signature", "Curve25519PublicKey",
    "IdentityKeys", "Versions", "getVersions"];
const unavailable = (name) => () => {
    throw new Error(`@matrix-org/matrix-sdk-crypto-nodejs.${name}: not installed (the bridge test runs without encryption)`);
};
for (const name of names) {
    const fail = unavailable(name);
    module.exports[name] = new Proxy(function () {}, { construct: fail, apply: fail, get: (_, p) => p === "prototype" ? {} : fail() });
}
