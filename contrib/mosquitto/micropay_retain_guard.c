/*
 * micropay_retain_guard: a Mosquitto 2.0 plugin (v5 plugin API) that refuses
 * retained publishes outside micropay/v1/pub/+/+.
 *
 * Why: the acl_file cannot tell a retained publish from a normal one, so any
 * user may retain messages on every topic it may write, e.g. thousands of
 * micropay/v1/in/<made-up recipient>/<itself>, and fill the broker's memory.
 * The protocol retains only micropay/v1/pub/<sender>/<kind>.
 *
 * How: Mosquitto 2.0 asks the MOSQ_EVT_ACL_CHECK callbacks in registration
 * order and stops at the first answer that is not MOSQ_ERR_PLUGIN_DEFER.
 * Plugins register in mosquitto_plugin_init, before the acl_file's own check
 * is registered (also after a SIGHUP, which re-registers only the acl_file's),
 * so this callback sees every check first. It answers only "no" (a retained
 * write outside micropay/v1/pub/+/+) and defers everything else, so the
 * acl_file still decides who may write where.
 *
 * Retained publishes and Wills (with their retain flag) both arrive as
 * MOSQ_ACL_WRITE. A refused Will is dropped entirely, not published unretained.
 *
 * Not covered: the acl_file lets a user write micropay/v1/pub/<itself>/#, so it
 * can still retain messages under made-up kinds, micropay/v1/pub/<itself>/<any>.
 *
 * Build: cc -std=c99 -Wall -Wextra -Werror -fPIC -shared \
 *            micropay_retain_guard.c -o micropay_retain_guard.so
 * (Debian: apt-get install mosquitto-dev libmosquitto-dev). No library to link:
 * the symbols used below are exported by the mosquitto executable itself.
 * Config: plugin /path/to/micropay_retain_guard.so
 */

#include <stdbool.h>
#include <stddef.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

/* The only topics on which a retained message may be stored. */
#define RETAINED_TOPICS "micropay/v1/pub/+/+"

static mosquitto_plugin_id_t *plugin_id = NULL;

static int retain_guard_acl_check(int event, void *event_data, void *userdata)
{
	const struct mosquitto_evt_acl_check *check = event_data;
	bool allowed = false;
	const char *client_id;

	(void)event;
	(void)userdata;

	if(check->access != MOSQ_ACL_WRITE || !check->retain){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	/* A malformed topic (or any error) counts as "does not match": refused. */
	if(mosquitto_topic_matches_sub(RETAINED_TOPICS, check->topic, &allowed) == MOSQ_ERR_SUCCESS
			&& allowed){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	client_id = mosquitto_client_id(check->client);
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"micropay_retain_guard: denied retained PUBLISH from %s to '%s'",
			client_id ? client_id : "(unknown)", check->topic);
	return MOSQ_ERR_ACL_DENIED;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;

	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5){
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;

	plugin_id = identifier;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK,
			retain_guard_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;

	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK,
			retain_guard_acl_check, NULL);
}
