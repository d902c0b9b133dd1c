// Limb heatmap decoding (KposeLimbHeatmap.kt) against the golden vectors of kpose's Python
// LimbHeatmapCodec.decode (web_demo/test/golden/limb_heatmap.json and limb_heatmap_coco.json,
// the files the JS port is tested against): defaults equal to Python's, then each case step
// by step as the PAF cases (GoldenTest.kt's groupingCase: peaks, limb order, candidates scored
// by the limb map, people), template people and real ones (coco_mini val2017, exact and
// perturbed maps whose thresholds reject candidates). A misspelt codec setting is refused.
// Called from GoldenTest.kt's main; the metadata dispatch is checked in its metadata().
import dev.kpose.*
import java.io.File

fun limbHeatmap(dir: File) {
    val golden = load(dir, "limb_heatmap")
    sameSettings("LimbHeatmapCodec", LimbHeatmapCodec(1, 1, 3, 3, emptyList()).settings(), golden.obj("defaults"))
    val cases = golden.objects("cases") + load(dir, "limb_heatmap_coco").objects("cases")
    for (case in cases) {
        val codec = LimbHeatmapCodec.fromJson(case.obj("codec"))
        groupingCase("limb heatmap ${case.string("name")}", case, codec, codec.grouping, floats(case.obj("limb_maps")),
            ::limbMapSample)
    }
    // LimbHeatmapCodec.from_dict refuses a key it does not know; so does the reader.
    val codec = case(cases, "all_parameters").obj("codec")
    val misspelt = JsonObject(codec.map + ("paf_threshold" to 0.3), "m.json", "codec")
    val err = try {
        LimbHeatmapCodec.fromJson(misspelt)
        "no error"
    } catch (e: IllegalArgumentException) {
        e.message ?: ""
    }
    c.ok(err.startsWith("m.json: field 'codec.paf_threshold' is not a setting")) { "misspelt setting: '$err'" }
    c.report("limb heatmap grouping")
}

fun case(cases: List<JsonObject>, name: String) = cases.first { it.string("name") == name }
