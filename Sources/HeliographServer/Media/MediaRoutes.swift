import Foundation
import HTTPTypes
import HeliographCore
import HeliographProtocol
import HeliographStore
import Hummingbird
import NIOCore

/// Uploads and downloads over HTTP (see docs/protocol.md, "Media"). Files do not travel over the
/// WebSocket: parts are plain HTTP bodies, and downloads are streamed with `Range` support.
struct MediaRoutes: Sendable {
    let media: MediaService
    let maxBodyBytes: Int
    let authenticate: @Sendable (Request) async throws -> AuthenticatedDevice

    func register(on v1: RouterGroup<HeliographRequestContext>) {
        /// POST /v1/uploads — start a resumable upload (201).
        v1.post("uploads") { request, _ in
            let caller = try await authenticate(request)
            let create = try await decode(CreateUploadRequest.self, request)
            return try JSONBody.response(try await media.createUpload(create, by: caller), status: .created)
        }
        /// GET /v1/uploads/{id} — what the server holds of an upload, for resuming.
        v1.get("uploads/:id") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(try await media.status(of: try Self.uploadID(context), by: caller))
        }
        /// PUT /v1/uploads/{id}/parts/{index} — one part, exactly its length, as the raw body.
        v1.put("uploads/:id/parts/:index") { request, context in
            let caller = try await authenticate(request)
            let id = try Self.uploadID(context)
            let text = try context.parameters.require("index")
            guard let index = Int(text), index >= 0 else {
                throw HeliographError(.partOutOfRange, "'\(text)' is not a part index (0, 1, 2, ...)")
            }
            // At most one part is held in memory per request; the store writes it through.
            let limit = media.limits.partSize
            try BodyLimitMiddleware<HeliographRequestContext>.refuseDeclaredLength(of: request, above: limit)
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: limit)
            } catch let error as HTTPError where error.status == .contentTooLarge {
                throw HeliographError(.partOutOfRange, "a part is at most \(limit) bytes")
            }
            return try JSONBody.response(
                try await media.writePart(Data(body.readableBytesView), index: index, of: id, by: caller))
        }
        /// POST /v1/uploads/{id}/finish — check size and hash; the blob exists afterwards.
        v1.post("uploads/:id/finish") { request, context in
            let caller = try await authenticate(request)
            return try JSONBody.response(try await media.finish(try Self.uploadID(context), by: caller))
        }
        /// DELETE /v1/uploads/{id} — throw an upload away (204).
        v1.delete("uploads/:id") { request, context in
            let caller = try await authenticate(request)
            try await media.discard(try Self.uploadID(context), by: caller)
            return Response(status: .noContent)
        }
        /// GET /v1/blobs/{sha256} — the bytes, whole or a `Range`, streamed.
        v1.get("blobs/:hash") { request, context in
            try await download(request, context, withBody: true)
        }
        /// HEAD /v1/blobs/{sha256} — the headers of the download, without the bytes.
        v1.head("blobs/:hash") { request, context in
            try await download(request, context, withBody: false)
        }
        /// POST /v1/attachments/release — the sender deleted its message for everyone.
        v1.post("attachments/release") { request, _ in
            let caller = try await authenticate(request)
            return try JSONBody.response(
                try await media.release(try await decode(ReleaseAttachmentsRequest.self, request), by: caller))
        }
    }

    private func download(_ request: Request, _ context: HeliographRequestContext, withBody: Bool) async throws -> Response {
        let caller = try await authenticate(request)
        let text = try context.parameters.require("hash")
        guard let hash = BlobHash(hex: text) else {
            throw HeliographError(.badRequest, "'\(text)' is not a blob name (64 hexadecimal digits of SHA-256)")
        }
        let (info, mediaType) = try await media.readable(hash, by: caller)
        let etag = "\"\(hash.hex)\""
        var headers: HTTPFields = [
            .eTag: etag,
            // The bytes under a name never change, and only authorised readers get them.
            .cacheControl: "private, max-age=31536000, immutable",
            .acceptRanges: "bytes",
            .contentType: mediaType ?? "application/octet-stream",
        ]
        if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: { $0.trimmed == etag }) {
            return Response(status: .notModified, headers: headers)
        }
        var status = HTTPResponse.Status.ok
        var range: ClosedRange<Int64>?
        if let header = request.headers[.range], let requested = Self.parseRange(header, size: info.size) {
            guard let satisfiable = requested else {
                // Answered here rather than thrown: the refusal carries the blob's size.
                let refusal = HeliographError(
                    .rangeNotSatisfiable, "the range '\(header)' lies outside the blob's \(info.size) bytes")
                var response = try JSONBody.response(
                    ErrorEnvelope(error: ErrorBody(refusal)), status: .init(code: ErrorMapping.status(for: refusal.code)))
                response.headers[.contentRange] = "bytes */\(info.size)"
                return response
            }
            range = satisfiable
            status = .partialContent
            headers[.contentRange] = "bytes \(satisfiable.lowerBound)-\(satisfiable.upperBound)/\(info.size)"
        }
        let length = range.map { $0.upperBound - $0.lowerBound + 1 } ?? info.size
        headers[.contentLength] = String(length)
        guard withBody, length > 0 else { return Response(status: status, headers: headers) }
        let stream = media.read(hash, range: range)
        return Response(
            status: status, headers: headers,
            body: ResponseBody(contentLength: Int(length)) { writer in
                for try await chunk in stream { try await writer.write(ByteBuffer(bytes: chunk)) }
                try await writer.finish(nil)
            })
    }

    /// Reads and decodes a JSON body no larger than the frame limit.
    private func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let buffer = try await request.body.collect(upTo: maxBodyBytes)
        return try WireCodec.decode(type, from: Data(buffer.readableBytesView))
    }

    private static func uploadID(_ context: HeliographRequestContext) throws -> UploadID {
        let text = try context.parameters.require("id")
        guard let id = UploadID(text) else { throw HeliographError(.unknownUpload, "'\(text)' is not an upload id") }
        return id
    }

    /// One `bytes=` range (`a-b`, `a-` or `-n`) resolved against `size`: nil when the header is
    /// not one range this server reads (the whole blob is sent, as RFC 9110 allows), `.some(nil)`
    /// when the range is unsatisfiable.
    static func parseRange(_ header: String, size: Int64) -> ClosedRange<Int64>?? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst("bytes=".count).trimmed
        guard let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash]
        let last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            // The last n bytes.
            guard let count = Int64(last), count > 0 else { return nil }
            guard size > 0 else { return .some(nil) }
            return .some(max(0, size - count)...(size - 1))
        }
        guard let start = Int64(first), start >= 0 else { return nil }
        let end: Int64
        if last.isEmpty {
            end = size - 1
        } else {
            guard let value = Int64(last), value >= start else { return nil }
            end = min(value, size - 1)
        }
        guard start < size else { return .some(nil) }
        return .some(start...end)
    }
}

extension StringProtocol {
    fileprivate var trimmed: String { trimmingCharacters(in: .whitespaces) }
}
