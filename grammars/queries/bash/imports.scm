; source lib.sh / . lib.sh
((command
   name: (command_name (word) @_cmd)
   argument: [(word) (string (string_content)) (raw_string)] @module) @import
 (#any-of? @_cmd "source" "."))
