import ArgumentParser
import Foundation
import HeliographCore
import HeliographCrypto
import HeliographKit
import HeliographProtocol
import Logging

/// `helio`: Heliograph from the command line.
@main
struct Helio: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "helio",
        abstract: "Send and receive Heliograph messages from the command line.",
        discussion: """
            Profiles (one per account and device) live in $XDG_CONFIG_HOME/heliograph, else \
            ~/.config/heliograph. Use --profile to keep several on one machine. Messages are \
            end-to-end encrypted; each profile's keys are in NAME.keys beside it (mode 0600), sealed \
            with a passphrase when HELIO_PASSPHRASE is set.
            """,
        subcommands: [
            Register.self, Login.self, Recover.self, Send.self, Listen.self, Verify.self, Devices.self, Whoami.self,
            Seal.self, GroupCommand.self, ChannelCommand.self, Join.self, Chats.self, Read.self, Post.self, Reply.self,
            Edit.self, Delete.self, Forward.self, Pin.self, React.self, Search.self, Save.self,
        ]
    )
}

/// Options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(help: "Profile name (env: HELIO_PROFILE; default: default).")
    var profile: String?

    @Option(help: "Directory of profiles (default: $XDG_CONFIG_HOME/heliograph or ~/.config/heliograph).")
    var configDir: String?

    var environment: [String: String] { ProcessInfo.processInfo.environment }

    var profileName: String { profile ?? environment["HELIO_PROFILE"] ?? "default" }

    /// The profiles, sealed with HELIO_PASSPHRASE when it is set.
    var store: ProfileStore {
        ProfileStore(
            directory: configDir.map { URL(fileURLWithPath: $0) } ?? ProfileStore.defaultDirectory(), passphrase: passphrase)
    }

    /// The passphrase that seals the key file, if the person uses one.
    var passphrase: String? { environment["HELIO_PASSPHRASE"].flatMap { $0.isEmpty ? nil : $0 } }

    func client() throws -> HeliographClient {
        try HeliographClient(profileName: profileName, store: store, passphrase: passphrase, logger: quietLogger)
    }
}

/// What `login` and `recover` take: the account, the profile holding its identity key, and
/// the new device's name.
struct AccountKeyOptions: ParsableArguments {
    @Argument(help: "The account's username.")
    var username: String

    @Option(help: "The profile holding the account's identity key.")
    var identityFrom: String

    @Option(help: "A name for this device (default: the host name).")
    var deviceName: String?

    @OptionGroup var global: GlobalOptions
    @OptionGroup var server: ServerOption

    var newDeviceName: String { deviceName ?? defaultDeviceName }

    /// The identity private key, and the server: as given, else the source profile's.
    func source() throws -> (identity: Data, server: URL) {
        let source = try global.store.load(identityFrom)
        return (source.identityPrivateKey, server.server == nil ? source.server : try server.url())
    }
}

/// The server option of the commands that create a profile.
struct ServerOption: ParsableArguments {
    @Option(help: "Server base URL (env: HELIOGRAPH_SERVER; default: http://127.0.0.1:8080).")
    var server: String?

    func url() throws -> URL {
        let text = server ?? ProcessInfo.processInfo.environment["HELIOGRAPH_SERVER"] ?? "http://127.0.0.1:8080"
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https", "ws", "wss"].contains(scheme),
            url.host != nil
        else { throw ValidationError("'\(text)' is not a server URL such as http://127.0.0.1:8080") }
        return url
    }
}

/// Library logs stay quiet unless HELIO_LOG_LEVEL asks otherwise: people see one-line errors.
let quietLogger: Logger = {
    var logger = Logger(label: "helio")
    logger.logLevel = ProcessInfo.processInfo.environment["HELIO_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
    return logger
}()

/// Runs a command body, turning any failure into one readable line on stderr and exit code 1.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as HeliographError {
        FileHandle.standardError.write(Data("helio: \(error.message) [\(error.code)]\n".utf8))
        throw ExitCode(1)
    } catch let error as ConnectionFailed {
        FileHandle.standardError.write(
            Data("helio: cannot reach the server at \(error.url) (is 'heliograph serve' running?)\n".utf8))
        throw ExitCode(1)
    } catch let error as ConnectionClosed {
        FileHandle.standardError.write(Data("helio: \(error.description)\n".utf8))
        throw ExitCode(1)
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("helio: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// The default device name: this machine's host name.
var defaultDeviceName: String {
    let host = ProcessInfo.processInfo.hostName
    return host.isEmpty ? "helio" : String(host.prefix(64))
}

extension Helio {
    /// `helio register NAME`
    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an account with a new identity key and log this device in.")

        @Argument(help: "The username: 5-32 of A-Z a-z 0-9 _, starting with a letter, not ending with _.")
        var username: String

        @Option(help: "A name for this device (default: the host name).")
        var deviceName: String?

        @OptionGroup var global: GlobalOptions
        @OptionGroup var server: ServerOption

        func run() async throws {
            try await reportingErrors {
                let client = try await HeliographClient.register(
                    username: username, server: try server.url(), deviceName: deviceName ?? defaultDeviceName,
                    profileName: global.profileName, store: global.store, passphrase: global.passphrase, logger: quietLogger)
                await client.close()
                let profile = client.profile
                print("registered @\(profile.username) (device \(profile.deviceID)) in profile '\(global.profileName)'")
            }
        }
    }

    /// `helio login NAME --identity-from PROFILE`
    struct Login: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Log another device in to an existing account, using the identity key of another profile.")

        @OptionGroup var account: AccountKeyOptions

        func run() async throws {
            try await reportingErrors {
                let (identity, server) = try account.source()
                let username = account.username
                let client = try await HeliographClient.login(
                    username: username, identityPrivateKey: identity, server: server, deviceName: account.newDeviceName,
                    profileName: account.global.profileName, store: account.global.store,
                    passphrase: account.global.passphrase, logger: quietLogger,
                    approvalTimeout: .seconds(Int(Device.approvalWindow))
                ) { pending in
                    // Unbuffered: the person reads this while the command waits.
                    FileHandle.standardOutput.write(
                        Data(
                            """
                            this device waits for approval. On a device of @\(username) that is already logged in, run:
                                helio devices approve \(pending.code)
                            (QR form: \(pending.scannable))
                            waiting up to \(Int(Device.approvalWindow / 60)) minutes...

                            """.utf8))
                }
                await client.close()
                print(
                    "logged in @\(client.profile.username) as device \(client.profile.deviceID) in profile '\(account.global.profileName)'"
                )
            }
        }
    }

    /// `helio recover NAME --identity-from PROFILE`
    struct Recover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recover an account whose devices were all revoked, with a new identity key.",
            discussion: """
                Works only when no device of the account is active. The account gets a new identity key; \
                every contact sees an identity change and should compare safety numbers again.
                """)

        @OptionGroup var account: AccountKeyOptions

        func run() async throws {
            try await reportingErrors {
                let (identity, server) = try account.source()
                let client = try await HeliographClient.recover(
                    username: account.username, identityPrivateKey: identity, server: server,
                    deviceName: account.newDeviceName, profileName: account.global.profileName,
                    store: account.global.store, passphrase: account.global.passphrase, logger: quietLogger)
                await client.close()
                print(
                    "recovered @\(client.profile.username) with a new identity key as device \(client.profile.deviceID) in profile '\(account.global.profileName)'"
                )
            }
        }
    }

    /// `helio seal`
    struct Seal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal a profile and its key file that were written without a passphrase, with HELIO_PASSPHRASE.",
            discussion: """
                With HELIO_PASSPHRASE set, helio refuses plain (unsealed) profile and key files, because a plain \
                file someone else wrote could carry keys of their choosing. Run this once, only for files you \
                wrote yourself (for example with an earlier version of helio).
                """)

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                guard global.passphrase != nil else {
                    throw ValidationError("set HELIO_PASSPHRASE to the passphrase to seal with")
                }
                try global.store.sealPlainFiles(of: global.profileName)
                print("profile '\(global.profileName)' and its key file are sealed with the passphrase")
            }
        }
    }

    /// `helio send @name TEXT`, `helio send @name --file PATH [TEXT]`
    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send an end-to-end encrypted message to every device of an account (and your other devices).",
            discussion: """
                With --file the file is encrypted on this device with a key of its own, uploaded, and \
                sent as an attachment; the text, if any, is its caption.
                """)

        @Argument(help: "The recipient, as @name or name.")
        var recipient: String

        @Argument(help: "The text; several words are joined with spaces.")
        var text: [String] = []

        @Option(help: ArgumentHelp("Send this file as an encrypted attachment.", valueName: "path"))
        var file: String?

        @Flag(help: "Send without end-to-end encryption (readable by the server; for testing only).")
        var plaintext = false

        @OptionGroup var global: GlobalOptions

        func validate() throws {
            if file != nil, plaintext { throw ValidationError("attachments are always end-to-end encrypted: drop --plaintext") }
            if let file, !FileManager.default.isReadableFile(atPath: file) { throw ValidationError("cannot read '\(file)'") }
        }

        func run() async throws {
            try await reportingErrors {
                let message = text.joined(separator: " ")
                guard !message.isEmpty || file != nil else {
                    throw ValidationError("nothing to send: give the text after the recipient")
                }
                let client = try global.client()
                let response: SendResponse
                if let file {
                    let url = URL(fileURLWithPath: file)
                    let bar = ProgressBar(url.lastPathComponent)
                    let sent = try await client.sendAttachment(
                        file: url, to: recipient, caption: message.isEmpty ? nil : message, progress: bar.callback)
                    bar.finish()
                    for notice in sent.notices { FileHandle.standardError.write(Data("helio: note: \(notice)\n".utf8)) }
                    response = sent.response
                } else if plaintext {
                    response = try await client.send(text: message, to: recipient)
                } else {
                    let sent = try await client.sendEncrypted(text: message, to: recipient)
                    for notice in sent.notices { FileHandle.standardError.write(Data("helio: note: \(notice)\n".utf8)) }
                    response = sent.response
                }
                await client.close()
                let devices = response.deviceCount == 1 ? "1 device" : "\(response.deviceCount) devices"
                print("sent to \(recipient.hasPrefix("@") ? recipient : "@" + recipient) (\(devices))")
            }
        }
    }

    /// `helio listen`
    struct Listen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print messages as they arrive, with sender and time; Ctrl-C stops.",
            discussion: """
                Direct messages print as 'TIME @sender: text'; group and channel updates as \
                'TIME [Title] #SEQ @sender: text' (edits, deletions, pins and reactions name the message \
                they act on). Both catch up on what came while away.
                """)

        @Option(help: "Stop after this many messages (direct, group and channel together).")
        var count: Int?

        @Option(help: "Stop after this many seconds.")
        var timeout: Double?

        @Option(help: ArgumentHelp("Save received attachments and media into this directory.", valueName: "dir"))
        var saveDir: String?

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let client = try global.client()
                let saveDirectory = saveDir.map { URL(fileURLWithPath: $0) }
                let formatter = DateFormatter()
                formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
                let output = ListenOutput(limit: count)
                // Groups and channels are followed beside the inbox; the inbox also brings the
                // sender keys their private-group posts need.
                let chats = ChatFollower(client: client, output: output, saveDirectory: saveDirectory)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        _ = try? await client.prepareEncryption()
                        for try await message in client.messages() {
                            var line: String?
                            switch try await client.open(message) {
                            case .message(let decrypted):
                                for notice in decrypted.notices {
                                    FileHandle.standardError.write(Data("helio: note: \(notice)\n".utf8))
                                }
                                // A private group's sender key or title: nothing to show.
                                let time = formatter.string(from: message.serverTime)
                                if decrypted.content.group != nil, decrypted.content.text.isEmpty {
                                    chats.nudge()
                                    line = nil
                                } else if decrypted.fromOwnDevice, let to = decrypted.content.to {
                                    line = "\(time) you to @\(to): \(decrypted.content.text)"
                                } else {
                                    line = "\(time) @\(decrypted.senderName): \(decrypted.content.text)"
                                }
                                // Attachments: shown under the message, remembered for `helio save`.
                                let media = decrypted.content.attachments.map {
                                    ReceivedMedia(sender: decrypted.senderName, receivedAt: message.serverTime, attachments: $0)
                                }
                                let extra = await handleReceivedMedia(
                                    media, reference: message.messageID, client: client, saveDirectory: saveDirectory
                                ) { media in
                                    try await chats.profileWrites.run { try client.rememberMedia(media, for: message.messageID) }
                                }
                                if !extra.isEmpty { line = ([line].compactMap { $0 } + extra).joined(separator: "\n") }
                            case .dropped(_, let reason):
                                // Not shown as a message: it could not be authenticated.
                                FileHandle.standardError.write(
                                    Data("helio: dropped message \(message.sequence) from @\(message.sender): \(reason)\n".utf8))
                                line = nil
                            }
                            // Unbuffered, so a pipe sees each message as it arrives.
                            let done = line.map(output.emit) ?? false
                            // Acknowledged here rather than by the next iteration, one profile
                            // writer at a time with the chat follower.
                            try await chats.profileWrites.run { try await client.acknowledge(message) }
                            if done { return }
                        }
                    }
                    group.addTask { await chats.run() }
                    if let timeout {
                        group.addTask { try await Task.sleep(for: .seconds(timeout)) }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
        }
    }

    /// `helio devices [revoke ID]`
    struct Devices: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List this account's devices, approve a new one, or revoke one.",
            subcommands: [List.self, Approve.self, Revoke.self],
            defaultSubcommand: List.self)

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List this account's devices.")
            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await reportingErrors {
                    let client = try global.client()
                    let devices = try await client.devices()
                    await client.close()
                    let formatter = DateFormatter()
                    formatter.dateFormat = "yyyy-MM-dd HH:mm"
                    for device in devices {
                        let created = formatter.string(from: Date(millisecondsSince1970: device.createdAt))
                        let status =
                            device.revokedAt != nil
                            ? "revoked"
                            : device.pending == true ? "waiting for approval" : device.current ? "this device" : "active"
                        print("\(device.deviceId)  \(device.name)  since \(created)  \(status)")
                    }
                }
            }
        }

        struct Approve: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Approve a new device of this account by the code it shows (or its QR string).")
            @Argument(help: "The code the new device printed, such as ABCD-EFGH-JKMN.")
            var code: String
            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await reportingErrors {
                    let client = try global.client()
                    let device = try await client.approveDevice(code: code)
                    await client.close()
                    print("approved \(device.deviceId) (\(device.name)); it is now in the account's signed device list")
                }
            }
        }

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Revoke a device: it is logged out everywhere at once and named revoked in the signed device list.")
            @Argument(help: "The device id, as 'helio devices' prints it.")
            var deviceID: String
            @Flag(
                help: """
                    Also replace the account's identity key (for a stolen device): the old key logs nothing in any more, \
                    contacts see an identity change, and the account's other devices must be linked again.
                    """)
            var rotateIdentity = false
            @OptionGroup var global: GlobalOptions

            func run() async throws {
                try await reportingErrors {
                    guard let id = DeviceID(deviceID) else { throw ValidationError("'\(deviceID)' is not a device id") }
                    let client = try global.client()
                    let device = try await client.revokeDevice(id, rotateIdentity: rotateIdentity)
                    await client.close()
                    print("revoked \(device.deviceId) (\(device.name))")
                    if rotateIdentity {
                        print("the account has a new identity key; link your other devices again with 'helio login'")
                    }
                }
            }
        }
    }

    /// `helio verify @name`
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the safety number with an account; compare it in person or over another channel.",
            discussion: """
                Both of you run 'helio verify' for each other and compare the 60 digits. If they \
                match, no one can read your messages in between; mark the contact with --confirm. The \
                number changes when either identity key changes.
                """)

        @Argument(help: "The other account, as @name or name.")
        var account: String

        @Flag(help: "Record that you compared the numbers and they match.")
        var confirm = false

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let client = try global.client()
                let (number, verified, notices) = try await client.safetyNumber(with: account)
                for notice in notices { FileHandle.standardError.write(Data("helio: note: \(notice)\n".utf8)) }
                if confirm { try await client.markVerified(account) }
                await client.close()
                let name = account.hasPrefix("@") ? account : "@" + account
                print("safety number with \(name):")
                let groups = number.description.split(separator: " ")
                for row in stride(from: 0, to: groups.count, by: 4) {
                    print("  " + groups[row..<min(row + 4, groups.count)].joined(separator: " "))
                }
                print("for a QR code: \(number.scannable)")
                print(confirm || verified ? "status: verified" : "status: not verified (run again with --confirm once compared)")
            }
        }
    }

    /// `helio whoami`
    struct Whoami: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the profile's account, device and server.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let profile = try global.store.load(global.profileName)
                print("@\(profile.username)  device \(profile.deviceID) (\(profile.deviceName))  server \(profile.server)")
            }
        }
    }
}
