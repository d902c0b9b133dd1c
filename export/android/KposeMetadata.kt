// The metadata of a kpose export (kpose/deploy/metadata.py): skeleton (K, names, limbs, flip
// pairs, OKS sigmas), codec, task, crop padding; and a minimal JSON reader for it, in plain
// Kotlin rather than Android's org.json so that the metadata reading runs, and is tested,
// off-device with the decoders (export/android/test/GoldenTest.kt reads the golden vectors
// with it too).
package dev.kpose

import kotlin.math.max

/** A model's keypoint layout, from the metadata's "skeleton" entry (kpose/skeletons.py). */
class Skeleton(val name: String, val keypoints: List<String>, val flipPairs: List<Pair<Int, Int>>,
               val limbs: List<Pair<Int, Int>>, val sigmas: DoubleArray?) {
    val numKeypoints: Int get() = keypoints.size

    init {
        val k = keypoints.size
        for ((a, b) in flipPairs + limbs) require(a in 0 until k && b in 0 until k && a != b) {
            "skeleton '$name': pair ($a, $b) is not two different keypoints of its $k"
        }
        require(sigmas == null || sigmas.size == k) { "skeleton '$name': ${sigmas?.size} OKS sigmas for $k keypoints" }
    }

    /** Channel permutation that swaps every flip pair (Skeleton.flip_index). */
    fun flipIndex(): IntArray {
        val perm = IntArray(numKeypoints) { it }
        for ((a, b) in flipPairs) { perm[a] = b; perm[b] = a }
        return perm
    }

    companion object {
        /** The metadata's skeleton: {name, keypoints, flip_pairs, limbs, oks_sigmas (or null)}. */
        fun fromJson(o: JsonObject): Skeleton {
            val names = o.strings("keypoints")
            if (names.isEmpty()) o.fail("keypoints", "is empty")
            val sigmas = if (o.isNull("oks_sigmas")) null else o.doubles("oks_sigmas")
            for ((key, pairs) in listOf("flip_pairs" to o.pairs("flip_pairs"), "limbs" to o.pairs("limbs"))) {
                for ((a, b) in pairs) if (a !in names.indices || b !in names.indices || a == b) {
                    o.fail(key, "has ($a, $b), not two different keypoints of the ${names.size} in 'keypoints'")
                }
            }
            if (sigmas != null && sigmas.size != names.size) {
                o.fail("oks_sigmas", "has ${sigmas.size} values for ${names.size} keypoints")
            }
            return o.build { Skeleton(o.string("name"), names, o.pairs("flip_pairs"), o.pairs("limbs"), sigmas) }
        }
    }
}

const val TOP_DOWN = "top_down"
const val BOTTOM_UP = "bottom_up"

/** A bottom-up model's codec.type -> its reader (kpose/deploy/graph.py LIMB_OUTPUTS lists the same
 * types): PAF grouping (KposePaf.kt) or limb heatmaps (KposeLimbHeatmap.kt). */
val BOTTOM_UP_CODECS: Map<String, (JsonObject) -> BottomUpCodec> = linkedMapOf(
    "paf" to { o: JsonObject -> PafCodec.fromJson(o) }, "limb_heatmap" to { o: JsonObject -> LimbHeatmapCodec.fromJson(o) })

/** The codec of a bottom-up model, as its "type" says; a type without a decoder here fails, naming
 * the field: decoding the maps by another codec's rule would give wrong people that look right. */
fun bottomUpCodec(codec: JsonObject): BottomUpCodec {
    val type = codec.string("type")
    val read = BOTTOM_UP_CODECS[type] ?: codec.fail("type", "is '$type'; this reader decodes bottom-up models with " +
        "codec type ${BOTTOM_UP_CODECS.keys.joinToString(" or ")}: update export/android/*.kt with its decoder, " +
        "or re-export the model with kpose")
    return read(codec)
}

/** What an exported model says about itself (kpose/deploy/metadata.py, schema version 1).
 * bottomUpCodec: a bottom-up model's codec (PafCodec or LimbHeatmapCodec), null for top-down. */
class KposeMetadata(val modelName: String, val task: String, val signature: String, val inputName: String,
                    val outputNames: List<String>, val skeleton: Skeleton, val heatmapCodec: HeatmapCodec,
                    val bottomUpCodec: BottomUpCodec?, val cropPadding: Double, val wholeImagePadding: Double) {
    companion object {
        /** kpose.json's text; `where` names the file in errors. */
        fun parse(text: String, where: String = "kpose.json"): KposeMetadata = fromJson(Json.parseObject(text, where))

        fun fromJson(m: JsonObject): KposeMetadata = try {
            read(m)
        } catch (e: IllegalArgumentException) {
            val msg = e.message ?: ""
            if ("re-export" in msg || "update" in msg) throw e
            throw IllegalArgumentException("$msg; re-export the model with `kpose export` (kpose writes kpose.json)", e)
        }

        private fun read(m: JsonObject): KposeMetadata {
            if (m.string("format") != "kpose") m.fail("format", "is not 'kpose': not a kpose export")
            if (m.int("schema_version") > 1) {
                m.fail("schema_version", "is ${m.int("schema_version")}; this reader knows 1: update export/android/*.kt")
            }
            val task = m.obj("model").string("task")
            if (task != TOP_DOWN && task != BOTTOM_UP) m.obj("model").fail("task", "is '$task', not $TOP_DOWN or $BOTTOM_UP")
            val skeleton = Skeleton.fromJson(m.obj("skeleton"))
            val codecJson = m.obj("codec")
            val bottomUp = if (task == BOTTOM_UP) bottomUpCodec(codecJson) else null
            val heat = bottomUp?.heatmapCodec ?: HeatmapCodec.fromJson(codecJson)
            val outputs = m.objects("outputs")
            val k = skeleton.numKeypoints
            val channels = listOf(k) + (if (bottomUp != null) listOf(bottomUp.limbChannels) else emptyList())
            if (outputs.size != channels.size) {
                m.fail("outputs", "has ${outputs.size} entries; a $task model has ${channels.size}")
            }
            // The limb maps are read by name (KposePose.run): the codec's output must be there.
            if (bottomUp != null && outputs[1].string("name") != bottomUp.limbOutput) {
                outputs[1].fail("name", "is '${outputs[1].string("name")}'; a ${codecJson.string("type")} codec reads " +
                    "'${bottomUp.limbOutput}'")
            }
            outputs.forEachIndexed { i, out ->
                val shape = out.ints("shape")
                if (shape.size != 4 || shape[1] != heat.heatmapH || shape[2] != heat.heatmapW || shape[3] != channels[i]) {
                    out.fail("shape", "is ${shape.toList()}, but codec.heatmap_size and skeleton (K = $k) say " +
                        "[1, ${heat.heatmapH}, ${heat.heatmapW}, ${channels[i]}]")
                }
            }
            bottomUp?.limbs?.forEach { (a, b) ->
                if (max(a, b) >= k) codecJson.fail("limbs", "uses keypoint ${max(a, b)} of a $k-keypoint skeleton")
            }
            val crop = if (task == TOP_DOWN) m.obj("crop") else null
            return KposeMetadata(m.obj("model").string("name"), task, m.string("signature"), m.obj("input").string("name"),
                outputs.map { it.string("name") }, skeleton, heat, bottomUp,
                crop?.double("padding") ?: 1.0, crop?.double("whole_image_padding") ?: 1.0)
        }
    }
}


/** JSON text -> Map<String, Any?> / List<Any?> / Double / String / Boolean / null. */
object Json {
    fun parse(text: String, where: String = "JSON"): Any? {
        val p = Parser(text, where)
        p.ws()
        val v = p.value()
        p.ws()
        if (p.i != text.length) p.fail("unexpected '${text[p.i]}' after the value")
        return v
    }

    fun parseObject(text: String, where: String = "JSON"): JsonObject {
        val v = parse(text, where)
        if (v !is Map<*, *>) throw IllegalArgumentException("$where: expected a JSON object at the top level")
        @Suppress("UNCHECKED_CAST")
        return JsonObject(v as Map<String, Any?>, where, "")
    }

    private class Parser(val s: String, val where: String) {
        var i = 0

        fun fail(msg: String): Nothing = throw IllegalArgumentException("$where: invalid JSON at character $i: $msg")

        fun ws() {
            while (i < s.length && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++
        }

        fun value(): Any? {
            if (i >= s.length) fail("unexpected end of text")
            return when (s[i]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> word("true", true)
                'f' -> word("false", false)
                'n' -> word("null", null)
                else -> num()
            }
        }

        private fun word(w: String, v: Any?): Any? {
            if (!s.startsWith(w, i)) fail("expected $w")
            i += w.length
            return v
        }

        private fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            i++
            ws()
            if (i < s.length && s[i] == '}') { i++; return out }
            while (true) {
                ws()
                if (i >= s.length || s[i] != '"') fail("expected a key")
                val key = str()
                ws()
                if (i >= s.length || s[i] != ':') fail("expected ':'")
                i++
                ws()
                out[key] = value()
                ws()
                if (i < s.length && s[i] == ',') { i++; continue }
                if (i < s.length && s[i] == '}') { i++; return out }
                fail("expected ',' or '}'")
            }
        }

        private fun arr(): List<Any?> {
            val out = ArrayList<Any?>()
            i++
            ws()
            if (i < s.length && s[i] == ']') { i++; return out }
            while (true) {
                ws()
                out.add(value())
                ws()
                if (i < s.length && s[i] == ',') { i++; continue }
                if (i < s.length && s[i] == ']') { i++; return out }
                fail("expected ',' or ']'")
            }
        }

        private fun str(): String {
            val sb = StringBuilder()
            i++
            while (true) {
                if (i >= s.length) fail("unterminated string")
                val c = s[i++]
                if (c == '"') return sb.toString()
                if (c != '\\') { sb.append(c); continue }
                if (i >= s.length) fail("unterminated escape")
                when (val e = s[i++]) {
                    '"', '\\', '/' -> sb.append(e)
                    'b' -> sb.append('\b')
                    'f' -> sb.append('\u000C')
                    'n' -> sb.append('\n')
                    'r' -> sb.append('\r')
                    't' -> sb.append('\t')
                    'u' -> {
                        if (i + 4 > s.length) fail("short \\u escape")
                        sb.append(s.substring(i, i + 4).toInt(16).toChar())
                        i += 4
                    }
                    else -> fail("unknown escape \\$e")
                }
            }
        }

        private fun num(): Double {
            val start = i
            while (i < s.length && (s[i] in '0'..'9' || s[i] in "-+.eE")) i++
            if (start == i) fail("unexpected '${s[i]}'")
            // Double.parseDouble rounds correctly, so Python's repr of a float64 comes back bit for bit.
            return s.substring(start, i).toDoubleOrNull() ?: fail("bad number '${s.substring(start, i)}'")
        }
    }
}

/** A JSON object with typed getters whose errors name the file and the field's path. */
class JsonObject(val map: Map<String, Any?>, val where: String, val path: String) {
    private fun field(key: String) = if (path.length == 0) key else "$path.$key"

    fun fail(key: String, problem: String): Nothing =
        throw IllegalArgumentException("$where: field '${field(key)}' $problem")

    /** make(), its IllegalArgumentException (a constructor's check) put in terms of this object. */
    fun <T> build(make: () -> T): T = try {
        make()
    } catch (e: IllegalArgumentException) {
        if (e.message?.startsWith(where) == true) throw e
        throw IllegalArgumentException("$where: '${if (path.length == 0) "(top level)" else path}': ${e.message}", e)
    }

    fun has(key: String) = map.containsKey(key)
    fun isNull(key: String) = map[key] == null

    fun get(key: String): Any? {
        if (!map.containsKey(key)) fail(key, "is missing")
        return map[key]
    }

    fun obj(key: String): JsonObject {
        val v = get(key) as? Map<*, *> ?: fail(key, "is not an object")
        @Suppress("UNCHECKED_CAST")
        return JsonObject(v as Map<String, Any?>, where, field(key))
    }

    fun double(key: String): Double = get(key) as? Double ?: fail(key, "is not a number (got ${map[key]})")

    fun int(key: String): Int {
        val d = double(key)
        if (d != Math.rint(d)) fail(key, "is not an integer (got $d)")
        return d.toInt()
    }

    fun intOrNull(key: String): Int? = if (map[key] == null) null else int(key)
    fun string(key: String): String = get(key) as? String ?: fail(key, "is not a string (got ${map[key]})")
    fun bool(key: String): Boolean = get(key) as? Boolean ?: fail(key, "is not true/false (got ${map[key]})")
    fun list(key: String): List<Any?> = get(key) as? List<*> ?: fail(key, "is not a list")

    fun objects(key: String): List<JsonObject> = list(key).mapIndexed { n, v ->
        @Suppress("UNCHECKED_CAST")
        JsonObject(v as? Map<String, Any?> ?: fail(key, "item $n is not an object"), where, "${field(key)}[$n]")
    }

    fun doubles(key: String): DoubleArray {
        val l = list(key)
        return DoubleArray(l.size) { l[it] as? Double ?: fail(key, "item $it is not a number") }
    }

    /** A codec entry's input and heatmap sizes, [height, width] each, after checking its type. */
    /** Refuses any key but `known` and a codec's type and sizes, naming it and `owner` (the Python
     *  class whose from_dict would refuse it too): a misspelt setting must not decode with its default. */
    fun onlyCodecSettings(known: Set<String>, owner: String) {
        for (key in map.keys - known - listOf("type", "input_size", "heatmap_size", "limbs")) {
            fail(key, "is not a setting of the codec ($owner)")
        }
    }

    fun codecSizes(type: String, hint: String = ""): Pair<IntArray, IntArray> {
        if (string("type") != type) fail("type", "is '${string("type")}', expected '$type'$hint")
        val input = ints("input_size")
        val grid = ints("heatmap_size")
        if (input.size != 2 || grid.size != 2) fail("input_size", "and heatmap_size must be [height, width]")
        return Pair(input, grid)
    }

    fun ints(key: String): IntArray {
        val d = doubles(key)
        return IntArray(d.size) { if (d[it] == Math.rint(d[it])) d[it].toInt() else fail(key, "item $it is not an integer") }
    }

    fun strings(key: String): List<String> =
        list(key).mapIndexed { n, v -> v as? String ?: fail(key, "item $n is not a string") }

    /** [[a, b], ...] -> pairs (limbs, flip pairs). */
    fun pairs(key: String): List<Pair<Int, Int>> = list(key).mapIndexed { n, v ->
        val p = v as? List<*>
        val a = p?.getOrNull(0) as? Double
        val b = p?.getOrNull(1) as? Double
        if (p == null || p.size != 2 || a == null || b == null || a != Math.rint(a) || b != Math.rint(b)) {
            fail(key, "item $n is not a pair of integers [a, b]")
        }
        Pair(a.toInt(), b.toInt())
    }
}
